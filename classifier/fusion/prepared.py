"""Training inputs, built once: the catalogue's splits with their cached MiniLM outputs, the frozen vision
stages' activations (fp16 ``.npy``), foreground masks, vague titles and category-word flags."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, cast

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from tqdm import tqdm

from classifier.fusion.augmentation import augment_with_foreground, foreground_share, non_white
from classifier.fusion.catalogue_snapshot import snapshot_from_catalogue
from classifier.fusion.config import FusionConfig
from classifier.fusion.data import (
    Row,
    image_to_array,
    load_image,
    load_image_arrays,
    read_catalogue,
    vague_titles,
    vague_titles_via_tool,
)
from classifier.fusion.encoder import TextEncoder
from classifier.fusion.modeling import FusionModel, TextBatch, efficientnet_stage_ends
from classifier.fusion.text import EntityExtractor, KeywordModel, category_text

if TYPE_CHECKING:
    from classifier.fusion.onnx_backbone import OnnxEarlyStages


# what training reads per epoch: fp16 frozen stride-8 / stride-16 maps and the frozen blocks' output after
# them (``cached_stages``: None with 11 frozen; with 5..10 the second is the last frozen block's output),
# and the non-white share per stride-8 cell [n, grid, grid] (None without the attention's weak label)
CachedView = tuple[tuple[np.ndarray, np.ndarray, np.ndarray | None], np.ndarray | None]


@dataclass
class SplitData:
    rows: list[Row]
    images: np.ndarray | None  # uint8 [n, 3, s, s] (ResNet v1, trained end to end from pixels)
    full: TextBatch  # cached MiniLM outputs of the full titles (hidden fp16)
    vague: TextBatch  # ... of the vague titles
    labels: torch.Tensor  # [n] leaf index (-1 when the leaf is not a training leaf)
    vague_titles: list[str]
    category_tokens: torch.Tensor | None = None  # [n, tokens] 1 where a full-title token is a category word
    # the cached frozen maps training reads (``cache_view``): the plain images' (view 0), then
    # ``cfg.augmented_views`` augmented copies, one per epoch in turn; empty when training from pixels
    views: list[CachedView] = field(default_factory=list)


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


ONNX_MAX_DIFF = 1e-3  # ONNX Runtime's early stages are used only if they match PyTorch's this closely


def onnx_early_stages(model: FusionModel, image_size: int, cache: Path | None) -> OnnxEarlyStages | None:
    """The frozen early stages on ONNX Runtime (exported under ``cache/onnx``), or None when it is not
    available (PyTorch computes the cache then)."""
    try:
        from classifier.fusion.onnx_backbone import OnnxEarlyStages

        return OnnxEarlyStages(
            model.backbone, image_size, cache_dir=(cache / "onnx") if cache is not None else None
        )
    except Exception as e:  # onnxruntime missing or the export failed
        print(f"frozen stages on PyTorch (ONNX Runtime unavailable: {e})")
        return None


def cache_view(
    cfg: FusionConfig,
    rows: list[Row],
    base: Path,
    cache: Path | None,
    view: int,
    batch_size: int = 32,
    *,
    onnx: bool = True,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """View ``view`` of the rows' frozen stride-8/16 maps and non-white share per stride-8 cell (pixels
    below ``data.WHITE_LEVEL`` in some channel), cached once. View 0: the plain images. Views 1, 2, ...:
    each image randomly flipped, scaled, shifted and recoloured first
    (``augmentation.augment_with_foreground``, draws seeded by the view and ``cfg.seed``), the share moved
    the same way; cached training otherwise sees only flips of one set of maps, these give the fine-tuned
    blocks other crops of every image. The frozen part is the package's ImageNet weights, so the key is the
    ids, size and preprocessing (and a view's number and seed, not the augmentation's ranges: after changing
    those, delete the cache folder's ``*_view*`` files). ``onnx``: on ONNX Runtime (several times faster
    than PyTorch eager on CPU), checked against PyTorch on the first batch (within :data:`ONNX_MAX_DIFF`,
    else PyTorch computes the rest)."""
    key8 = key16 = key_fg = None
    if cache is not None:
        cache.mkdir(parents=True, exist_ok=True)
        digest = hashlib.md5(
            (",".join(r.id for r in rows) + f"|{cfg.vision_backbone}|11|{cfg.pad_square}").encode()
        ).hexdigest()[:12]
        suffix = f"_view{view}_seed{cfg.seed}" if view else ""
        key8 = cache / f"early8_{cfg.image_size}_{len(rows)}_{digest}{suffix}.npy"
        key16 = cache / f"early16_{cfg.image_size}_{len(rows)}_{digest}{suffix}.npy"
        key_fg = cache / f"fg_{cfg.image_size}_{len(rows)}_{digest}{suffix}.npy"
        if key8.exists() and key16.exists() and key_fg.exists():
            return np.load(key8), np.load(key16), np.load(key_fg)
    gen = torch.Generator().manual_seed(cfg.seed * 1000 + view)
    vision_cfg = FusionConfig.from_dict({**cfg.to_dict(), "use_text": False})
    model = FusionModel(vision_cfg, 1).eval()
    s = cfg.image_size
    out8: np.ndarray | None = None
    out16: np.ndarray | None = None
    out_fg: np.ndarray | None = None
    runner = onnx_early_stages(model, s, cache) if onnx else None
    with torch.no_grad():
        desc = f"cache frozen stages, view {view}" if view else "cache frozen stages"
        for i in tqdm(range(0, len(rows), batch_size), desc=desc, unit="batch"):
            chunk = rows[i : i + batch_size]
            pix = torch.from_numpy(
                np.stack([image_to_array(load_image(base / r.image), s, cfg.pad_square) for r in chunk])
            )
            if view:
                pix, fg = augment_with_foreground(pix, gen)
            else:
                fg = non_white(pix)
            share = foreground_share(cast("torch.Tensor", fg))
            if out_fg is None:
                out_fg = np.zeros((len(rows), *share.shape[1:]), dtype=np.float16)
            out_fg[i : i + len(chunk)] = share.numpy().astype(np.float16)
            if runner is None:
                a, b = model.early_stages(pix)
            else:
                a, b = runner(model.normalise(pix))
                if i == 0:  # ONNX Runtime is trusted only if it gives PyTorch's maps on the first batch
                    ref = model.early_stages(pix)
                    diff = max(float((x - y).abs().max()) for x, y in zip((a, b), ref, strict=True))
                    if diff > ONNX_MAX_DIFF:
                        print(f"frozen stages on PyTorch (ONNX Runtime differs by {diff:.2g})")
                        runner, (a, b) = None, ref
            if out8 is None or out16 is None:
                out8 = np.zeros((len(rows), *a.shape[1:]), dtype=np.float16)
                out16 = np.zeros((len(rows), *b.shape[1:]), dtype=np.float16)
            out8[i : i + len(chunk)] = a.numpy().astype(np.float16)
            out16[i : i + len(chunk)] = b.numpy().astype(np.float16)
    if out8 is None or out16 is None or out_fg is None:
        raise ValueError("no rows to cache")
    if key8 is not None and key16 is not None and key_fg is not None:
        np.save(key8, out8)
        np.save(key16, out16)
        np.save(key_fg, out_fg)
    return out8, out16, out_fg


def _frozen_blocks_cached(
    cfg: FusionConfig,
    inputs: np.ndarray,
    key: Path | None,
    run: Callable[[FusionModel, torch.Tensor], torch.Tensor],
    desc: str,
    batch_size: int = 64,
) -> np.ndarray:
    """``run(backbone model, batch)`` over every row of ``inputs``, fp16, saved at ``key`` (and read
    back from it when it is there)."""
    if key is not None and key.exists():
        cached: np.ndarray = np.load(key)
        return cached
    model = FusionModel(FusionConfig.from_dict({**cfg.to_dict(), "use_text": False}), 1).eval()
    out: np.ndarray | None = None
    with torch.no_grad():
        for i in tqdm(range(0, len(inputs), batch_size), desc=desc, unit="batch"):
            y = run(model, torch.from_numpy(inputs[i : i + batch_size]).float())
            if out is None:
                out = np.zeros((len(inputs), *y.shape[1:]), dtype=np.float16)
            out[i : i + len(y)] = y.numpy().astype(np.float16)
    if out is None:
        raise ValueError("no rows to cache")
    if key is not None:
        np.save(key, out)
    return out


def cache_middle_features(
    cfg: FusionConfig, s16: np.ndarray, cache: Path | None, tag: str
) -> np.ndarray | None:
    """Output of the frozen blocks after stride 16 (lite0: 11..frozen_blocks-1) from the cached stride-16
    maps."""
    first = efficientnet_stage_ends(cfg.vision_backbone)[1] + 1
    if cfg.frozen_blocks <= first:
        return None
    key = cache / f"mid{cfg.frozen_blocks}_{tag}.npy" if cache is not None else None
    return _frozen_blocks_cached(
        cfg, s16, key, lambda m, x: m.backbone.middle(x), f"cache frozen blocks {first}+"
    )


def cache_front_features(cfg: FusionConfig, s8: np.ndarray, cache: Path | None, tag: str) -> np.ndarray:
    """Output of the last frozen block (lite0: 5..frozen_blocks-1, for 5 <= frozen_blocks < 11) from the
    cached stride-8 maps: what training starts from when the blocks from ``frozen_blocks`` up to stride 16
    are fine-tuned too."""
    first = efficientnet_stage_ends(cfg.vision_backbone)[0] + 1
    key = cache / f"front{cfg.frozen_blocks}_{tag}.npy" if cache is not None else None
    return _frozen_blocks_cached(
        cfg, s8, key, lambda m, x: m.backbone.front(x), f"cache frozen blocks {first}-{cfg.frozen_blocks - 1}"
    )


def cached_stages(
    cfg: FusionConfig, s8: np.ndarray, s16: np.ndarray, cache: Path | None, tag: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """What training reads per image: (stride-8 map, stride-16 map, frozen blocks after it) with every block
    up to stride 16 frozen (lite0: 11 or more); (stride-8 map, output of the last frozen block, None) with
    fewer (lite0: 5..10; :meth:`FusionModel.stages_from_early` runs the fine-tuned blocks up to stride 16
    on it)."""
    stride8_end, stride16_end = efficientnet_stage_ends(cfg.vision_backbone)
    if cfg.frozen_blocks <= stride16_end:
        if cfg.frozen_blocks <= stride8_end:
            raise ValueError(
                f"cached training needs the stride-8 stage frozen (frozen_blocks >= {stride8_end + 1})"
            )
        return s8, cache_front_features(cfg, s8, cache, tag), None
    return s8, s16, cache_middle_features(cfg, s16, cache, tag)


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
        splits: tuple[str, ...] = ("train", "val", "test", "support"),
        encoder: TextEncoder | None = None,
        max_train_rows: int | None = None,
    ) -> None:
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
        # the frozen stages are cached only when they are the pretrained ImageNet weights: a backbone trained
        # from scratch (vision_pretrained=False, the ablation) has nothing frozen and trains from pixels
        efficient = (
            cfg.use_image
            and cfg.vision_backbone != "resnet"
            and cfg.vision_pretrained
            and cfg.frozen_blocks > 0
        )
        for sp in splits:
            rows = [r for r in all_rows if r.split == sp]
            if not rows:
                continue
            keep = None
            if sp == "train" and max_train_rows and max_train_rows < len(rows):
                keep = stratified_subset(rows, max_train_rows)
            imgs = None
            views: list[CachedView] = []
            # only the training split's maps are needed: evaluation runs the engine on files
            if efficient and sp == "train":
                kept = keep or list(range(len(rows)))
                digest = hashlib.md5(",".join(rows[i].id for i in kept).encode())
                tag = f"{cfg.image_size}_{len(kept)}_{digest.hexdigest()[:10]}"
                for view in range(cfg.augmented_views + 1):
                    s8, s16, fg = cache_view(cfg, rows, self.data_dir, cache, view)
                    if keep is not None:
                        s8, s16, fg = s8[keep], s16[keep], fg[keep]
                    suffix = f"_view{view}_seed{cfg.seed}" if view else ""
                    stages = cached_stages(cfg, s8, s16, cache, tag + suffix)
                    views.append((stages, fg if cfg.attention_weight > 0 else None))
            if keep is not None:
                rows = [rows[i] for i in keep]
            if cfg.use_image and not efficient:
                imgs = load_image_arrays(
                    rows, self.data_dir, cfg.image_size, cache, desc=sp, pad=cfg.pad_square
                )
            vt = [vague[r.id] for r in rows]
            self.splits[sp] = SplitData(
                rows,
                imgs,
                encode_cached(self.encoder, self.extractor, [r.title for r in rows], cache, f"{sp}_full"),
                encode_cached(self.encoder, self.extractor, vt, cache, f"{sp}_vague"),
                torch.tensor([self.leaf_index.get(r.leaf_id, -1) for r in rows]),
                vt,
                category_word_tokens(self.encoder, [r.title for r in rows], vt),
                views,
            )
        self.keywords = KeywordModel.fit(
            [r.title for r in self.splits["train"].rows], [r.leaf_id for r in self.splits["train"].rows]
        )
        self.category_text = self.encoder.sentence_embeddings(
            [category_text(self.snapshot, c) for c in self.leaves]
        )
