"""Training: the multi-task loss (CE + hierarchy + InfoNCE), the training loop, calibration on ``val``.

The inputs it trains on are built by :class:`classifier.fusion.prepared.Prepared`."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import cast

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from classifier.fusion.augmentation import augment_with_foreground
from classifier.fusion.config import FusionConfig
from classifier.fusion.ensemble import EnsembleModel
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
    model: FusionModel | EnsembleModel,
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
        foreground: [batch, h, w] non-white share per cell (:func:`~classifier.fusion.prepared.cache_view`): the spatial
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


class WeightAverage:
    """Exponential moving average of a model's trained weights and batch-norm statistics over the steps.

    Runs of one recipe that differ only in their seed spread by ~0.8 point on ``val``; the average of the
    last ~1/(1 - decay) steps sits at a flatter point than the last step's weights. The decay warms up
    (``(1 + t) / (10 + t)``) so the first steps' weights fade at once."""

    def __init__(self, model: FusionModel, decay: float) -> None:
        self.decay = decay
        self.steps = 0
        # state_dict tensors share storage with the parameters and buffers, which are updated in place
        trained = model.trainable_state().keys()
        self.live = {k: v for k, v in model.state_dict().items() if k in trained}
        self.average = {k: v.detach().clone() for k, v in self.live.items()}

    def update(self) -> None:
        d = min(self.decay, (1 + self.steps) / (10 + self.steps))
        self.steps += 1
        with torch.no_grad():
            for k, v in self.live.items():
                if v.is_floating_point():
                    self.average[k].lerp_(v, 1 - d)
                else:  # batch-norm step counters
                    self.average[k].copy_(v)

    def copy_to(self, model: FusionModel) -> None:
        model.load_state_dict(self.average, strict=False)


def train_model(
    prep: Prepared,
    cfg: FusionConfig,
    *,
    log: Callable[[str], object] = print,
    max_minutes: float | None = None,
    on_epoch: Callable[[int, FusionModel], object] | None = None,
    init_state: Mapping[str, torch.Tensor] | None = None,
) -> FusionModel:
    """Train on ``train``; returns the model (eval mode).

    EfficientNet: from the cached frozen stride-8/16 maps (only the later blocks, the fusion and the heads
    run); ResNet v1: end to end from augmented pixels. ``on_epoch(epoch, model)`` runs after each epoch
    (model in eval mode; training resumes in train mode), e.g. a learning curve on held-out rows.
    ``init_state``: the trained weights to start from (a model directory's ``model.safetensors``, same
    leaves): a warm restart, the schedule (warm-up + cosine) run again over ``cfg.epochs``; with fewer
    frozen blocks than that model, the newly fine-tuned blocks start from their ImageNet weights.
    ``cfg.weight_average_decay`` > 0: the model returned holds the moving average of the weights
    (:class:`WeightAverage`); ``on_epoch`` sees the last step's.
    """
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    tr = prep.splits["train"]
    model = FusionModel(cfg, len(prep.leaves))
    model.head.category_text.copy_(prep.category_text)
    if init_state is not None:
        # pretrained blocks the earlier model kept frozen start from their ImageNet weights (already loaded)
        missing = {k for k in set(model.trainable_state()) - set(init_state) if not k.startswith("backbone.")}
        if missing:
            raise ValueError(f"init_state lacks {sorted(missing)[:5]}")
        model.load_state_dict(dict(init_state), strict=False)
    _, mats = level_matrices(prep.leaves, prep.snapshot)
    # an EfficientNet trained from pixels (the from-scratch ablation): NHWC is ~20% faster on CPU (depthwise)
    nhwc = cfg.use_image and cfg.vision_backbone != "resnet" and not tr.views
    if nhwc:
        model = model.to(memory_format=torch.channels_last)
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
    average = WeightAverage(model, cfg.weight_average_decay) if cfg.weight_average_decay > 0 else None
    for ep in range(cfg.epochs):
        model.train()
        # the plain maps, then each augmented copy in turn (none: an end-to-end model trains from pixels)
        early, foreground = tr.views[ep % len(tr.views)] if tr.views else (None, None)
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
            if cfg.use_image and early is not None:
                sel = np.sort(idx.numpy())  # sorted reads; labels/text follow the same order below
                order = torch.from_numpy(np.argsort(np.argsort(idx.numpy())))
                flip = torch.rand(len(idx), generator=gen) < 0.5
                s8 = flip_maps(torch.from_numpy(early[0][sel])[order].float(), flip)
                s16 = flip_maps(torch.from_numpy(early[1][sel])[order].float(), flip)
                fg = None
                if foreground is not None:
                    fg = flip_maps(torch.from_numpy(foreground[sel])[order].float().unsqueeze(1), flip)[:, 0]
                mid = None
                if early[2] is not None:
                    mid = flip_maps(torch.from_numpy(early[2][sel])[order].float(), flip)
                hs = model.stages_from_early(s8, s16, mid)
                out = model.forward_head(model.forward_features(None, text, hidden_states=hs))
            else:
                fg = None
                pixels = None
                if cfg.use_image:
                    # an end-to-end image model has its pixels loaded (Prepared); EfficientNet from scratch
                    # keeps the background-attention weak label, from the augmented batch's own geometry
                    images = torch.from_numpy(cast("np.ndarray", tr.images)[idx.numpy()])
                    weak = cfg.vision_backbone != "resnet" and cfg.attention_weight > 0
                    pixels, fg = augment_with_foreground(images, gen, foreground=weak)
                    if nhwc:
                        pixels = pixels.contiguous(memory_format=torch.channels_last)
                out = model(pixels, text)
            loss = compute_loss(model, out, y, choice, mats, cfg, weight, foreground=fg)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            opt.step()
            sched.step()
            if average is not None:
                average.update()
            step += 1
            tot += float(loss.detach()) * len(idx)
            cnt += len(idx)
            correct += int((out.logits.argmax(-1) == y).sum())
            bar.set_postfix(loss=f"{tot / cnt:.3f}", acc=f"{correct / cnt:.3f}")
        log(
            f"epoch {ep + 1}/{cfg.epochs}: loss {tot / max(cnt, 1):.4f} train acc {correct / max(cnt, 1):.4f} "
            f"({time.time() - t0:.0f}s)"
        )
        if on_epoch is not None:
            model.eval()
            on_epoch(ep + 1, model)
        if (
            max_minutes
            # the next epoch (at the mean epoch time so far) would end past the budget
            and (time.time() - t0) / 60 * (ep + 2) / (ep + 1) > max_minutes
            and ep + 1 < cfg.epochs
        ):
            log(f"stopping early: time budget {max_minutes} min")
            break
    if average is not None:
        average.copy_to(model)
    if nhwc and tr.images is not None:
        recompute_bn_statistics(model, tr.images)
    model.eval()
    return model


def recompute_bn_statistics(
    model: FusionModel, images: np.ndarray, max_images: int = 2048, batch_size: int = 64
) -> None:
    """Batch-norm statistics of a backbone trained from scratch, recomputed at the end of training.

    EfficientNet's BN keeps running averages with momentum 0.01, so after a few hundred steps of fast-moving
    weights they lag behind the trained network (the from-scratch ablation's image head: 33.6% -> 42.4% on
    384 `val` images with the statistics recomputed). Here: the exact average over up to ``max_images``
    training images (evenly spaced, un-augmented, drop-connect off), the weights untouched."""
    bb = model.backbone
    bns = [m for m in bb.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return
    saved = [m.momentum for m in bns]
    drop = bb.drop_connect
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over every batch below
    bb.drop_connect = 0.0
    was_training = model.training
    model.train()
    idx = np.linspace(0, len(images) - 1, min(max_images, len(images))).astype(int)
    with torch.no_grad():
        for i in range(0, len(idx), batch_size):
            model.image_stages(torch.from_numpy(images[idx[i : i + batch_size]]))
    for m, mom in zip(bns, saved, strict=True):
        m.momentum = mom
    bb.drop_connect = drop
    model.train(was_training)


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
    return float(log_t.detach().exp().clamp(0.05, 20))


def choose_threshold(
    conf: np.ndarray,
    correct: np.ndarray,
    flagged: np.ndarray,
    target: float,
    min_accepted: int = 20,
    z: float = 0.0,
) -> float:
    """Lowest confidence threshold whose auto-accepted set (conf >= t, not flagged) has precision >= target.

    With ``z`` > 0 the precision taken is the Wilson lower bound ``z`` standard errors below the observed one:
    the lowest threshold that merely reaches the target on the calibration set is the one most flattered by
    its noise (on halves of ``val`` it held 99% on the other half only half the time)."""
    ok = ~flagged
    c, k = conf[ok], correct[ok]
    order = np.argsort(-c)
    c, k = c[order], k[order]
    prec = wilson_lower_bound(np.cumsum(k), np.arange(1, len(k) + 1), z)
    best = 1.0 + 1e-6
    for i in range(len(c)):
        # a threshold between two items with the same confidence is not one the engine can apply
        if i + 1 >= min_accepted and prec[i] >= target and (i + 1 == len(c) or c[i + 1] < c[i]):
            best = float(c[i])
    return best


def wilson_lower_bound(successes: np.ndarray, n: np.ndarray, z: float) -> np.ndarray:
    """Wilson score interval's lower end of a proportion (``z`` = 0: the observed proportion)."""
    p: np.ndarray = np.asarray(successes / n, dtype=float)
    if z == 0:
        return p
    z2 = z * z
    lower: np.ndarray = (p + z2 / (2 * n) - z * np.sqrt(p * (1 - p) / n + z2 / (4 * n * n))) / (1 + z2 / n)
    return lower


# ---- calibration: per-path / per-title temperatures and their held-out check (pure functions) -------------
@dataclass(frozen=True)
class CalibrationScores:
    """A calibration set's per-item scores, taken once with every temperature at 1 (the engine's raws).

    Which path the gate takes depends on the light temperature (an item goes light only if the light path's
    confidence reaches the review threshold), so the light path's scores of every item are kept.
    """

    full: torch.Tensor  # [n, k] full-path logits (entity bonus included), temperature 1
    light: torch.Tensor  # [n, k] light-path logits (image temperature applied, light temperature 1)
    labels: torch.Tensor  # [n] leaf index (-1: not a trained leaf, always wrong)
    typed: torch.Tensor  # [n] bool: the title names a product type (the gazetteer found one)
    eligible: torch.Tensor  # [n] bool: every light-path condition holds but the confidence threshold


@dataclass(frozen=True)
class PathTemperatures:
    """Temperatures of the served confidence: full path (titles naming a product type / the others) and
    the light path (on top of the image temperature inside its logits)."""

    full: float = 1.0
    untyped: float = 1.0
    light: float = 1.0

    def as_dict(self) -> dict[str, float]:
        return {
            "temperature": self.full,
            "untyped_temperature": self.untyped,
            "light_temperature": self.light,
        }


def served(
    s: CalibrationScores, t: PathTemperatures, threshold: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """What the engine would serve: (confidence, correct, on the light path) per item."""
    p_light = torch.softmax(s.light.float() / t.light, -1)
    c_light, j_light = p_light.max(-1)
    on_light = s.eligible & (c_light >= threshold)
    t_full = torch.where(s.typed, torch.tensor(t.full), torch.tensor(t.untyped))
    c_full, j_full = torch.softmax(s.full.float() / t_full.unsqueeze(-1), -1).max(-1)
    conf = torch.where(on_light, c_light, c_full)
    pred = torch.where(on_light, j_light, j_full)
    return conf.numpy(), (pred == s.labels).numpy(), on_light.numpy()


def _subset(s: CalibrationScores, m: torch.Tensor) -> CalibrationScores:
    return CalibrationScores(s.full[m], s.light[m], s.labels[m], s.typed[m], s.eligible[m])


def fit_path_temperatures(
    s: CalibrationScores, threshold: float, *, per_path: bool = True, per_title: bool = True, rounds: int = 3
) -> PathTemperatures:
    """Temperatures fitted by NLL on the items each one serves (``per_path=False, per_title=False``: one
    temperature of the full path over every item, the light path left at 1 — the single-temperature
    calibration). The light temperature decides which items go light, so the fit alternates a few rounds."""
    if not per_path and not per_title:
        one = fit_temperature(s.full, s.labels)
        return PathTemperatures(one, one, 1.0)
    t = PathTemperatures()
    for _ in range(rounds if per_path else 1):
        _, _, light = served(s, t, threshold)
        on_light = torch.from_numpy(light)
        full_items = ~on_light if per_path else torch.ones_like(on_light)
        fm = full_items & s.typed if per_title else full_items
        t_full = _fit_or(s.full[fm], s.labels[fm], 1.0)
        t_untyped = t_full
        if per_title:
            t_untyped = _fit_or(s.full[full_items & ~s.typed], s.labels[full_items & ~s.typed], t_full)
        t_light = _fit_or(s.light[on_light], s.labels[on_light], t.light) if per_path else 1.0
        t = PathTemperatures(t_full, t_untyped, t_light)
    return t


def _fit_or(logits: torch.Tensor, labels: torch.Tensor, default: float, min_items: int = 30) -> float:
    """:func:`fit_temperature`, or ``default`` when too few items (or no error at all) to fit one."""
    if len(labels) < min_items or bool((logits.argmax(-1) == labels).all()):
        return default  # without an error NLL sends the temperature to its floor
    return fit_temperature(logits, labels)


def cross_validated_ece(
    s: CalibrationScores,
    groups: np.ndarray,
    fit: Callable[[CalibrationScores], PathTemperatures],
    threshold: float,
    *,
    masks: dict[str, np.ndarray] | None = None,
    folds: int = 2,
    repeats: int = 5,
    seed: int = 0,
) -> dict[str, float]:
    """ECE of a calibration method on items it was not fitted on: the items are split ``folds`` ways by
    ``groups`` (e.g. the catalogue row, so a row's full and vague titles stay together), fitted on all folds
    but one, measured on the held-out one; the held-out predictions of every fold are pooled and the ECE
    taken per mask (``masks``: name -> [n] bool, e.g. full / vague titles; "all" when None), averaged over
    ``repeats`` random splits."""
    from classifier.fusion.evaluation import ece

    masks = masks or {"all": np.ones(len(groups), dtype=bool)}
    uniq = np.unique(groups)
    out: dict[str, list[float]] = {k: [] for k in masks}
    rng = np.random.default_rng(seed)
    for _ in range(repeats):
        fold_of = dict(zip(uniq.tolist(), rng.permutation(len(uniq)) % folds, strict=True))
        fold = np.array([fold_of[g] for g in groups.tolist()])
        conf = np.zeros(len(groups))
        correct: np.ndarray = np.zeros(len(groups), dtype=bool)
        for f in range(folds):
            held = torch.from_numpy(fold == f)
            t = fit(_subset(s, ~held))
            c, k, _ = served(_subset(s, held), t, threshold)
            conf[held.numpy()] = c
            correct[held.numpy()] = k
        for name, m in masks.items():
            out[name].append(ece(conf[m], correct[m]))
    return {k: round(float(np.mean(v)), 4) for k, v in out.items()}
