"""Training: cached inputs, the multi-task loss (CE + hierarchy + InfoNCE), calibration on ``val``."""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from tqdm import tqdm

from classifier.fusion.config import FusionConfig
from classifier.fusion.data import Row, load_image_arrays, read_catalogue, vague_titles, vague_titles_via_tool
from classifier.fusion.encoder import TextEncoder
from classifier.fusion.knowledge import KnowledgeSnapshot, snapshot_from_catalogue
from classifier.fusion.modeling import FusionModel, TextBatch, info_nce
from classifier.fusion.text import EntityExtractor, KeywordModel, category_text


@dataclass
class SplitData:
    rows: list[Row]
    images: np.ndarray | None  # uint8 [n, 3, s, s] (ResNet v1, trained end to end from pixels)
    full: TextBatch  # cached MiniLM outputs of the full titles (hidden fp16)
    vague: TextBatch  # ... of the vague titles
    labels: torch.Tensor  # [n] leaf index (-1 when the leaf is not a training leaf)
    vague_titles: list[str]
    # fp16 frozen stride-8 / stride-16 maps and the frozen blocks' output after them (None: 11 frozen)
    early: tuple[np.ndarray, np.ndarray, np.ndarray | None] | None = None
    category_tokens: torch.Tensor | None = None  # [n, tokens] 1 where a full-title token is a category word
    foreground: np.ndarray | None = None  # fp16 [n, grid, grid] non-white share per stride-8 cell


def category_word_tokens(encoder: TextEncoder, titles: list[str], vague: list[str]) -> torch.Tensor:
    """[n, max_tokens] 1 for the tokens of the words the vague title dropped (the category words)."""
    enc = encoder.tokenizer(
        list(titles),
        padding="max_length",
        truncation=True,
        max_length=encoder.max_tokens,
        return_offsets_mapping=True,
    )
    out = torch.zeros(len(titles), encoder.max_tokens, dtype=torch.uint8)
    for i, (t, v) in enumerate(zip(titles, vague, strict=True)):
        keep = v.split()
        spans, pos = [], 0
        for w in t.split():  # the vague title is the full one with whole words removed, in order
            start = t.index(w, pos)
            pos = start + len(w)
            if keep and keep[0] == w:
                keep.pop(0)
            else:
                spans.append((start, pos))
        for j, (a, b) in enumerate(enc["offset_mapping"][i]):
            if b > a and any(a < e and b > s0 for s0, e in spans):
                out[i, j] = 1
    return out


def cache_early_features(
    cfg: FusionConfig, rows: list[Row], base: Path, cache: Path | None, desc: str, batch_size: int = 32
) -> tuple[np.ndarray, np.ndarray]:
    """Frozen EfficientNet stride-8/16 maps of the rows' images, computed ONCE (fp16 .npy under ``cache``).

    The frozen part is the package's ImageNet weights, so the cache key is the ids, size and preprocessing.
    """
    from classifier.fusion.data import image_to_array, load_image
    from classifier.fusion.modeling import FusionModel

    key8 = key16 = None
    if cache is not None:
        cache.mkdir(parents=True, exist_ok=True)
        digest = hashlib.md5(
            (",".join(r.id for r in rows) + f"|{cfg.vision_backbone}|11|{cfg.pad_square}").encode()
        ).hexdigest()[:12]
        key8 = cache / f"early8_{cfg.image_size}_{len(rows)}_{digest}.npy"
        key16 = cache / f"early16_{cfg.image_size}_{len(rows)}_{digest}.npy"
        if key8.exists() and key16.exists():
            return np.load(key8), np.load(key16)
    vision_cfg = FusionConfig.from_dict({**cfg.to_dict(), "use_text": False})
    model = FusionModel(vision_cfg, 1).eval()
    s = cfg.image_size
    out8 = out16 = None
    with torch.no_grad():
        for i in tqdm(range(0, len(rows), batch_size), desc=f"cache frozen stages {desc}", unit="batch"):
            chunk = rows[i : i + batch_size]
            pix = torch.from_numpy(
                np.stack([image_to_array(load_image(base / r.image), s, cfg.pad_square) for r in chunk])
            )
            a, b = model.early_stages(pix)
            if out8 is None:
                out8 = np.zeros((len(rows), *a.shape[1:]), dtype=np.float16)
                out16 = np.zeros((len(rows), *b.shape[1:]), dtype=np.float16)
            out8[i : i + len(chunk)] = a.numpy().astype(np.float16)
            out16[i : i + len(chunk)] = b.numpy().astype(np.float16)
    if key8 is not None:
        np.save(key8, out8)
        np.save(key16, out16)
    return out8, out16


def cache_foreground(cfg: FusionConfig, rows: list[Row], base: Path, cache: Path | None) -> np.ndarray:
    """Non-white share per stride-8 cell of each row's (padded) image, fp16 [n, s/8, s/8], cached once."""
    from classifier.fusion.data import foreground_share, image_to_array, load_image

    grid = cfg.image_size // 8
    key = None
    if cache is not None:
        digest = hashlib.md5((",".join(r.id for r in rows) + f"|{cfg.pad_square}").encode()).hexdigest()[:12]
        key = cache / f"fg{grid}_{cfg.image_size}_{len(rows)}_{digest}.npy"
        if key.exists():
            return np.load(key)
    out = np.zeros((len(rows), grid, grid), dtype=np.float16)
    for i, r in enumerate(tqdm(rows, desc="foreground masks", unit="image", mininterval=5)):
        arr = image_to_array(load_image(base / r.image), cfg.image_size, cfg.pad_square)
        out[i] = foreground_share(arr, grid)
    if key is not None:
        np.save(key, out)
    return out


def cache_middle_features(
    cfg: FusionConfig, s16: np.ndarray, cache: Path | None, tag: str, batch_size: int = 64
) -> np.ndarray | None:
    """Output of the frozen blocks after stride 16 (11..frozen_blocks-1) from the cached stride-16 maps."""
    from classifier.fusion.modeling import FusionModel

    if cfg.frozen_blocks <= 11:
        return None
    key = None
    if cache is not None:
        key = cache / f"mid{cfg.frozen_blocks}_{tag}.npy"
        if key.exists():
            return np.load(key)
    model = FusionModel(FusionConfig.from_dict({**cfg.to_dict(), "use_text": False}), 1).eval()
    out = None
    with torch.no_grad():
        for i in tqdm(range(0, len(s16), batch_size), desc="cache frozen blocks 11+", unit="batch"):
            m = model.backbone.middle(torch.from_numpy(s16[i : i + batch_size]).float())
            if out is None:
                out = np.zeros((len(s16), *m.shape[1:]), dtype=np.float16)
            out[i : i + len(m)] = m.numpy().astype(np.float16)
    if key is not None:
        np.save(key, out)
    return out


def encode_cached(
    encoder: TextEncoder,
    extractor: EntityExtractor,
    titles: list[str],
    cache: Path | None,
    tag: str,
    batch_size: int = 256,
) -> TextBatch:
    """MiniLM token outputs of ``titles`` (cached in safetensors, keyed by the titles)."""
    key = None
    if cache is not None:
        cache.mkdir(parents=True, exist_ok=True)
        h = hashlib.md5(("\n".join(titles) + str(encoder.max_tokens)).encode()).hexdigest()[:12]
        key = cache / f"text_{tag}_{h}.safetensors"
        if key.exists():
            d = load_file(str(key))
            return TextBatch(d["hidden"], d["mask"], d["types"], d["prior"])
    parts = []
    for i in tqdm(range(0, len(titles), batch_size), desc=f"MiniLM {tag}", leave=False):
        b = encoder.encode(titles[i : i + batch_size], extractor)
        parts.append(TextBatch(b.hidden.half().cpu(), b.mask.cpu(), b.types.cpu(), b.prior.cpu()))
    tb = TextBatch(*(torch.cat([getattr(p, f) for p in parts]) for f in ("hidden", "mask", "types", "prior")))
    if key is not None:
        save_file(
            {
                "hidden": tb.hidden.contiguous(),
                "mask": tb.mask.contiguous(),
                "types": tb.types.contiguous(),
                "prior": tb.prior.contiguous(),
            },
            str(key),
        )
    return tb


def take(tb: TextBatch, idx) -> TextBatch:
    return TextBatch(tb.hidden[idx], tb.mask[idx], tb.types[idx], tb.prior[idx])


def mix_text(
    full: TextBatch,
    vague: TextBatch,
    empty: TextBatch,
    idx: torch.Tensor,
    choice: torch.Tensor,
    drop: torch.Tensor | None = None,
):
    """Per-sample choice 0 = full title, 1 = vague title, 2 = no title, 3 = full title with the category-word
    tokens flagged in ``drop`` ([batch, tokens] 0/1) masked out (a seller who names only part of the type)."""
    out = []
    for f in ("hidden", "mask", "types", "prior"):
        a, b = getattr(full, f)[idx], getattr(vague, f)[idx]
        e = getattr(empty, f).expand_as(a)
        c = choice.view(-1, *([1] * (a.dim() - 1)))
        out.append(torch.where((c == 0) | (c == 3), a, torch.where(c == 1, b, e)))
    tb = TextBatch(*out)
    if drop is not None:
        part = (choice == 3).view(-1, 1) & drop.bool()
        mask = tb.mask.masked_fill(part, 0)
        empty_row = mask.sum(-1) == 0  # every word dropped: keep [CLS] so pooling has a token
        mask[empty_row, 0] = 1
        tb = TextBatch(tb.hidden, mask, tb.types, tb.prior)
    return trim_tokens(tb)


def trim_tokens(tb: TextBatch) -> TextBatch:
    """Drop the padding columns every title of the batch has (titles are short; the cache pads to 32)."""
    used = tb.mask.bool().any(0).nonzero()  # columns where some title has a token (dropped words leave holes)
    n = int(used.max()) + 1 if len(used) else 1
    return TextBatch(tb.hidden[:, :n], tb.mask[:, :n], tb.types[:, :n], tb.prior[:, :n])


def augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random flip, scale/shift and brightness/contrast on a uint8 batch -> float [0, 1]."""
    x = x.float() / 255.0
    n = x.shape[0]
    flip = torch.rand(n, generator=gen) < 0.5
    x = torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)
    scale = 0.8 + 0.25 * torch.rand(n, generator=gen)
    tx, ty = (torch.rand(2, n, generator=gen) - 0.5) * 0.2
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = scale
    theta[:, 1, 1] = scale
    theta[:, 0, 2] = tx
    theta[:, 1, 2] = ty
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, padding_mode="border", align_corners=False)
    b = 1 + (torch.rand(n, 1, 1, 1, generator=gen) - 0.5) * 0.3
    c = 1 + (torch.rand(n, 1, 1, 1, generator=gen) - 0.5) * 0.3
    m = x.mean((1, 2, 3), keepdim=True)
    return ((x - m) * c + m * b).clamp(0, 1)


def level_matrices(
    leaves: list[str], snapshot: KnowledgeSnapshot
) -> tuple[list[list[str]], list[torch.Tensor]]:
    """For levels 0 (master) and 1 (sub): the names and a [leaves, n_level] 0/1 membership matrix."""
    names, mats = [], []
    for lvl in range(2):
        ids = sorted({snapshot.ancestors(leaf, include_self=True)[lvl] for leaf in leaves})
        pos = {c: i for i, c in enumerate(ids)}
        m = torch.zeros(len(leaves), len(ids))
        for j, leaf in enumerate(leaves):
            m[j, pos[snapshot.ancestors(leaf, include_self=True)[lvl]]] = 1
        names.append(ids)
        mats.append(m)
    return names, mats


def stratified_subset(rows: list[Row], n: int, min_per_class: int = 5) -> list[int]:
    """Indices of about ``n`` rows: every class keeps the same share of its rows (so the class priors stay
    as in the catalogue), and at least ``min_per_class`` (or all it has); evenly spaced, catalogue order."""
    by: dict[str, list[int]] = {}
    for i, r in enumerate(rows):
        by.setdefault(r.leaf_id, []).append(i)
    frac = n / len(rows)
    picked: list[int] = []
    for idx in by.values():
        k = min(len(idx), max(min_per_class, round(frac * len(idx))))
        picked += [idx[int(t * len(idx) / k)] for t in range(k)]
    return sorted(picked)


class Prepared:
    """Everything training and evaluation need, built once from the data folder."""

    def __init__(
        self,
        data_dir: str | Path,
        cfg: FusionConfig,
        cache: Path | None = None,
        splits=("train", "val", "test", "support"),
        encoder: TextEncoder | None = None,
        max_train_rows: int | None = None,
    ):
        """``max_train_rows``: train on a class-stratified subset (a cheaper run on a busy CPU; every class
        keeps rows, the largest are cut first); the frozen-stage cache of the whole split is reused."""
        self.data_dir = Path(data_dir)
        cat = self.data_dir / "catalogue.csv"
        all_rows = read_catalogue(cat)
        self.snapshot = snapshot_from_catalogue(cat, splits=("train", "val"))
        self.leaves = sorted({r.leaf_id for r in all_rows if r.split == "train"})
        self.leaf_index = {c: i for i, c in enumerate(self.leaves)}
        self.extractor = EntityExtractor(self.snapshot)
        self.encoder = encoder or TextEncoder(cfg.text_checkpoint, cfg.max_tokens)
        vague = None
        if cache is not None:
            try:
                vague = vague_titles_via_tool(self.data_dir, cache / "catalogue_vague.csv")
            except Exception:  # the tool is optional: fall back to the same rule in-process
                vague = None
        if vague is None:
            vague = vague_titles(all_rows, all_rows)
        self.empty = self.encoder.encode([""], self.extractor)
        self.empty = TextBatch(self.empty.hidden.half(), self.empty.mask, self.empty.types, self.empty.prior)
        self.splits: dict[str, SplitData] = {}
        efficient = cfg.use_image and cfg.vision_backbone != "resnet" and cfg.frozen_blocks > 0
        for sp in splits:
            rows = [r for r in all_rows if r.split == sp]
            if not rows:
                continue
            keep = None
            if sp == "train" and max_train_rows and max_train_rows < len(rows):
                keep = stratified_subset(rows, max_train_rows)
            imgs, early, foreground = None, None, None
            # only the training split's maps are needed: evaluation runs the engine on files
            if efficient and sp == "train":
                s8, s16 = cache_early_features(cfg, rows, self.data_dir, cache, sp)
                if keep is not None:
                    s8, s16 = s8[keep], s16[keep]
                digest = hashlib.md5(",".join(rows[i].id for i in (keep or range(len(rows)))).encode())
                tag = f"{cfg.image_size}_{len(s16)}_{digest.hexdigest()[:10]}"
                early = (s8, s16, cache_middle_features(cfg, s16, cache, tag))
                if cfg.attention_weight > 0:
                    foreground = cache_foreground(cfg, rows, self.data_dir, cache)
                    if keep is not None:
                        foreground = foreground[keep]
            if keep is not None:
                rows = [rows[i] for i in keep]
            if cfg.use_image and not efficient:
                imgs = load_image_arrays(rows, self.data_dir, cfg.image_size, cache, desc=sp)
            vt = [vague[r.id] for r in rows]
            self.splits[sp] = SplitData(
                rows,
                imgs,
                encode_cached(self.encoder, self.extractor, [r.title for r in rows], cache, f"{sp}_full"),
                encode_cached(self.encoder, self.extractor, vt, cache, f"{sp}_vague"),
                torch.tensor([self.leaf_index.get(r.leaf_id, -1) for r in rows]),
                vt,
                early,
                category_word_tokens(self.encoder, [r.title for r in rows], vt),
                foreground,
            )
        self.keywords = KeywordModel.fit(
            [r.title for r in self.splits["train"].rows], [r.leaf_id for r in self.splits["train"].rows]
        )
        self.category_text = self.encoder.sentence_embeddings(
            [category_text(self.snapshot, c) for c in self.leaves]
        )


def class_weights(labels: torch.Tensor, num_leaves: int, power: float) -> torch.Tensor | None:
    """CE weight per class ~ count**-power, scaled so the average sample weight is 1 (rare types count more)."""
    if power <= 0:
        return None
    counts = torch.bincount(labels[labels >= 0], minlength=num_leaves).float().clamp_min(1)
    w = counts.pow(-power)
    return w * counts.sum() / (w * counts).sum()


def compute_loss(
    model: FusionModel,
    out,
    y: torch.Tensor,
    choice: torch.Tensor,
    mats: list[torch.Tensor],
    cfg: FusionConfig,
    weight: torch.Tensor | None = None,
    sample_weight: torch.Tensor | None = None,
    foreground: torch.Tensor | None = None,
) -> torch.Tensor:
    """CE on leaves + hierarchy NLL (parents = sums of leaves) + image-head CE + text-head CE + InfoNCE.

    The one loss of training, fine-tuning and the benchmarks' variants.

    Args:
        out: the model's :class:`FusionOutput`; y: [batch] leaf indices; choice: [batch] 0 full title,
            1 vague, 2 none, 3 words dropped (only full titles enter the text head and the contrastive term).
        weight: per-class CE weights (:func:`class_weights`), or None.
        sample_weight: [batch] weights of the main CE (fine-tuning weighs corrections above replay rows).
        foreground: [batch, h, w] non-white share per cell (:func:`cache_foreground`): the spatial
            attention's mass on the white studio background is penalised, so it settles on the product.
    """
    ls = cfg.label_smoothing
    if sample_weight is None:
        loss = F.cross_entropy(out.logits, y, weight=weight, label_smoothing=ls)
    else:
        ce = F.cross_entropy(out.logits, y, weight=weight, reduction="none", label_smoothing=ls)
        loss = (ce * sample_weight).sum() / sample_weight.sum()
    logp = F.log_softmax(out.logits, -1)
    for m in mats:  # hierarchy: a parent's probability is the sum of its leaves'
        lp = torch.logsumexp(logp.unsqueeze(-1) + torch.log(m.clamp_min(1e-12)).unsqueeze(0), 1)
        loss = loss + cfg.hierarchy_weight * 0.5 * F.nll_loss(lp, m[y].argmax(-1))
    f = out.features
    if out.image_logits is not None and f.fused is not None:
        loss = loss + cfg.image_head_weight * F.cross_entropy(
            out.image_logits, y, weight=weight, label_smoothing=ls
        )
    if f.text_emb is not None and f.fused is not None:
        has = choice == 0
        if has.sum() >= 2:
            loss = loss + 0.3 * F.cross_entropy(model.head(f.text_emb[has]), y[has])
            if f.image_emb is not None:
                loss = loss + cfg.contrastive_weight * info_nce(f.image_emb[has], f.text_emb[has])
    if foreground is not None and f.attention is not None and cfg.attention_weight > 0:
        loss = loss + cfg.attention_weight * background_attention(f.attention, foreground)
    return loss + cfg.prototype_delta_l2 * model.head.delta.pow(2).sum(-1).mean()


def background_attention(attention: torch.Tensor, foreground: torch.Tensor) -> torch.Tensor:
    """Mean share of the spatial attention's mass on background cells, over the images with a clear
    (mostly white) background; 0 when the batch has none."""
    fg = foreground.float()
    if fg.shape[-2:] != attention.shape[-2:]:
        fg = F.interpolate(fg.unsqueeze(1), size=attention.shape[-2:], mode="area")[:, 0]
    clear = (fg.mean((1, 2)) < 0.9) & (fg.mean((1, 2)) > 0.005)
    if not bool(clear.any()):
        return attention.sum() * 0.0
    a, fg = attention[clear], fg[clear]
    return ((a * (1 - fg)).sum((1, 2)) / a.sum((1, 2)).clamp_min(1e-6)).mean()


def param_groups(model: FusionModel, cfg: FusionConfig) -> list[dict]:
    """Pretrained backbone blocks at ``lr * backbone_lr_scale``, everything else at ``lr``; frozen ones left out."""
    pretrained = cfg.vision_backbone != "resnet" and cfg.vision_pretrained
    back, rest = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (back if pretrained and name.startswith("backbone.") else rest).append(p)
    groups = [{"params": rest, "lr": cfg.lr}]
    if back:
        groups.append({"params": back, "lr": cfg.lr * cfg.backbone_lr_scale})
    return groups


def flip_maps(x: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
    """Horizontal flip of feature maps per sample (the augmentation left once early stages are cached)."""
    return torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)


def train_model(
    prep: Prepared, cfg: FusionConfig, *, log=print, max_minutes: float | None = None
) -> FusionModel:
    """Train on ``train``; returns the model (eval mode).

    EfficientNet: from the cached frozen stride-8/16 maps (only the later blocks, the fusion and the heads
    run); ResNet v1: end to end from augmented pixels.
    """
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    tr = prep.splits["train"]
    model = FusionModel(cfg, len(prep.leaves))
    model.head.category_text.copy_(prep.category_text)
    _, mats = level_matrices(prep.leaves, prep.snapshot)
    opt = torch.optim.AdamW(param_groups(model, cfg), lr=cfg.lr, weight_decay=cfg.weight_decay)
    n = len(tr.rows)
    steps = cfg.epochs * math.ceil(n / cfg.batch_size)
    warm = max(1, steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warm) * 0.5 * (1 + math.cos(math.pi * min(1.0, s / steps)))
    )
    mix = torch.tensor(list(cfg.title_mix) + [0.0] * (4 - len(cfg.title_mix)), dtype=torch.float)
    weight = class_weights(tr.labels, len(prep.leaves), cfg.class_balance)
    t0 = time.time()
    step = 0
    for ep in range(cfg.epochs):
        model.train()
        perm = torch.randperm(n, generator=gen)
        bar = tqdm(range(0, n, cfg.batch_size), desc=f"epoch {ep + 1}/{cfg.epochs}", unit="batch")
        tot, cnt, correct = 0.0, 0, 0
        for i in bar:
            idx = perm[i : i + cfg.batch_size]
            if len(idx) < 4:
                continue
            y = tr.labels[idx]
            choice = torch.multinomial(mix, len(idx), replacement=True, generator=gen)
            if not cfg.use_image:  # a text-only model sees full and vague titles, never an empty one
                choice = torch.where(choice == 2, torch.zeros_like(choice), choice)
            text = None
            if cfg.use_text:
                drop = None
                if tr.category_tokens is not None:
                    coin = torch.rand(tr.category_tokens[idx].shape, generator=gen) < cfg.word_drop
                    drop = tr.category_tokens[idx].bool() & coin
                text = mix_text(tr.full, tr.vague, prep.empty, idx, choice, drop)
            if cfg.use_image and tr.early is not None:
                sel = np.sort(idx.numpy())  # sorted reads; labels/text follow the same order below
                order = torch.from_numpy(np.argsort(np.argsort(idx.numpy())))
                flip = torch.rand(len(idx), generator=gen) < 0.5
                s8 = flip_maps(torch.from_numpy(tr.early[0][sel])[order].float(), flip)
                s16 = flip_maps(torch.from_numpy(tr.early[1][sel])[order].float(), flip)
                fg = None
                if tr.foreground is not None:
                    fg = flip_maps(torch.from_numpy(tr.foreground[sel])[order].float().unsqueeze(1), flip)[
                        :, 0
                    ]
                mid = None
                if tr.early[2] is not None:
                    mid = flip_maps(torch.from_numpy(tr.early[2][sel])[order].float(), flip)
                hs = model.stages_from_early(s8, s16, mid)
                out = model.forward_head(model.forward_features(None, text, hidden_states=hs))
            else:
                fg = None
                pixels = augment(torch.from_numpy(tr.images[idx.numpy()]), gen) if cfg.use_image else None
                out = model(pixels, text)
            loss = compute_loss(model, out, y, choice, mats, cfg, weight, foreground=fg)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            opt.step()
            sched.step()
            step += 1
            tot += float(loss.detach()) * len(idx)
            cnt += len(idx)
            correct += int((out.logits.argmax(-1) == y).sum())
            bar.set_postfix(loss=f"{tot / cnt:.3f}", acc=f"{correct / cnt:.3f}")
        log(
            f"epoch {ep + 1}/{cfg.epochs}: loss {tot / max(cnt, 1):.4f} train acc {correct / max(cnt, 1):.4f} "
            f"({time.time() - t0:.0f}s)"
        )
        if (
            max_minutes
            and (time.time() - t0) / 60 > max_minutes * (ep + 2) / (ep + 1)
            and ep + 1 < cfg.epochs
        ):
            log(f"stopping early: time budget {max_minutes} min")
            break
    return model.eval()


def fit_temperature(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Temperature minimising the NLL of ``logits`` on ``labels`` (LBFGS on log T)."""
    keep = labels >= 0
    logits, labels = logits[keep].float(), labels[keep]
    log_t = torch.zeros(1, requires_grad=True)
    opt = torch.optim.LBFGS([log_t], lr=0.1, max_iter=200)

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(logits / log_t.exp(), labels)
        loss.backward()
        return loss

    opt.step(closure)
    return float(log_t.exp().clamp(0.05, 20))


def choose_threshold(
    conf: np.ndarray, correct: np.ndarray, flagged: np.ndarray, target: float, min_accepted: int = 20
) -> float:
    """Lowest confidence threshold whose auto-accepted set (conf >= t, not flagged) has precision >= target."""
    ok = ~flagged
    c, k = conf[ok], correct[ok]
    order = np.argsort(-c)
    c, k = c[order], k[order]
    prec = np.cumsum(k) / np.arange(1, len(k) + 1)
    best = 1.0 + 1e-6
    for i in range(len(c)):
        # the threshold must also keep precision for every stricter setting (monotone from the top)
        if i + 1 >= min_accepted and prec[i] >= target and (i + 1 == len(c) or c[i + 1] < c[i]):
            best = float(c[i])
    return best
