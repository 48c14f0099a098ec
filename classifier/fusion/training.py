"""Training: the multi-task loss (CE + hierarchy + InfoNCE), the training loop, calibration on ``val``.

The inputs it trains on are built by :class:`classifier.fusion.prepared.Prepared`."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import cast

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from classifier.fusion.config import FusionConfig
from classifier.fusion.knowledge import KnowledgeSnapshot
from classifier.fusion.modeling import FusionModel, FusionOutput, TextBatch, info_nce
from classifier.fusion.prepared import Prepared


def take(tb: TextBatch, idx: torch.Tensor) -> TextBatch:
    return TextBatch(tb.hidden[idx], tb.mask[idx], tb.types[idx], tb.prior[idx])


def mix_text(
    full: TextBatch,
    vague: TextBatch,
    empty: TextBatch,
    idx: torch.Tensor,
    choice: torch.Tensor,
    drop: torch.Tensor | None = None,
) -> TextBatch:
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


def class_weights(labels: torch.Tensor, num_leaves: int, power: float) -> torch.Tensor | None:
    """CE weight per class ~ count**-power, scaled so the average sample weight is 1 (rare types count more)."""
    if power <= 0:
        return None
    counts = torch.bincount(labels[labels >= 0], minlength=num_leaves).float().clamp_min(1)
    w = counts.pow(-power)
    return w * counts.sum() / (w * counts).sum()


def compute_loss(
    model: FusionModel,
    out: FusionOutput,
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


def param_groups(model: FusionModel, cfg: FusionConfig) -> list[dict[str, list[torch.nn.Parameter] | float]]:
    """Pretrained backbone blocks at ``lr * backbone_lr_scale``, everything else at ``lr``; frozen ones left out."""
    pretrained = cfg.vision_backbone != "resnet" and cfg.vision_pretrained
    back: list[torch.nn.Parameter] = []
    rest: list[torch.nn.Parameter] = []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (back if pretrained and name.startswith("backbone.") else rest).append(p)
    groups: list[dict[str, list[torch.nn.Parameter] | float]] = [{"params": rest, "lr": cfg.lr}]
    if back:
        groups.append({"params": back, "lr": cfg.lr * cfg.backbone_lr_scale})
    return groups


def flip_maps(x: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
    """Horizontal flip of feature maps per sample (the augmentation left once early stages are cached)."""
    return torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)


def train_model(
    prep: Prepared,
    cfg: FusionConfig,
    *,
    log: Callable[[str], object] = print,
    max_minutes: float | None = None,
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
                # an end-to-end image model has its pixels loaded (Prepared)
                images = cast("np.ndarray", tr.images)
                pixels = augment(torch.from_numpy(images[idx.numpy()]), gen) if cfg.use_image else None
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
    model.eval()
    return model


def fit_temperature(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Temperature minimising the NLL of ``logits`` on ``labels`` (LBFGS on log T)."""
    keep = labels >= 0
    logits, labels = logits[keep].float(), labels[keep]
    log_t = torch.zeros(1, requires_grad=True)
    opt = torch.optim.LBFGS([log_t], lr=0.1, max_iter=200)

    def closure() -> torch.Tensor:
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
