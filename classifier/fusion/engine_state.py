"""The engine's per-snapshot state and its small serving parts: the state derived from a knowledge snapshot
(swapped as one object), the gazetteer's logit bonus, the LRU caches, INT8 quantisation and the attention
map's crop to the photo."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar, cast

import numpy as np
import PIL.Image
import torch
import torch.nn.functional as F

from classifier.fusion.config import FusionConfig
from classifier.fusion.encoder import TextEncoder
from classifier.fusion.knowledge import KnowledgeSnapshot
from classifier.fusion.modeling import no_grad
from classifier.fusion.routing import Finding
from classifier.fusion.text import Entity, EntityExtractor, KeywordModel, category_text


def routes_item(findings: Sequence[Mapping[str, object]]) -> bool:
    """Does any finding route the item (the routing contract's reading of severities)?"""
    return any(Finding.from_dict(f).routes for f in findings)


def quantize_linear(module: torch.nn.Module) -> torch.nn.Module:
    """INT8 dynamic quantisation of every ``nn.Linear`` (weights int8, activations quantised on the fly)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's notice that quantised tensors move to torchao
        return cast(
            torch.nn.Module,
            torch.ao.quantization.quantize_dynamic(module.eval(), {torch.nn.Linear}, dtype=torch.qint8),
        )


_K = TypeVar("_K", bound=Hashable)
_V = TypeVar("_V")


class LRUCache(Generic[_K, _V]):
    """A small thread-safe LRU map."""

    def __init__(self, capacity: int) -> None:
        self.capacity = int(capacity)
        self._d: OrderedDict[_K, _V] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: _K) -> _V | None:
        with self._lock:
            v = self._d.get(key)
            if v is not None:
                self._d.move_to_end(key)
            return v

    def put(self, key: _K, value: _V) -> None:
        if self.capacity <= 0:
            return
        with self._lock:
            self._d[key] = value
            self._d.move_to_end(key)
            while len(self._d) > self.capacity:
                self._d.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._d.clear()

    def __len__(self) -> int:
        return len(self._d)


@dataclass
class SnapshotState:
    """Everything derived from a snapshot; swapped as one object so a batch never sees half of it."""

    snapshot: KnowledgeSnapshot
    extractor: EntityExtractor
    leaves: list[str]  # candidate leaf ids
    prototypes: torch.Tensor  # [k, embed] fused-head prototypes
    image_prototypes: torch.Tensor  # [k, embed] image-head prototypes
    chains: list[tuple[str, ...]]  # ancestor ids per leaf (root..leaf)
    level_ids: list[list[str]]  # per level (0, 1): ids
    level_mats: list[torch.Tensor]  # per level: [k, n_level]
    noise: set[str] = field(default_factory=set)
    under: dict[str, list[int]] = field(default_factory=dict)  # category id -> indices of the leaves below it
    by_name: dict[str, list[int]] = field(default_factory=dict)  # leaf name (lower) -> leaf indices


@no_grad
def build_state(
    snapshot: KnowledgeSnapshot,
    *,
    model: torch.nn.Module,
    cfg: FusionConfig,
    encoder: TextEncoder,
    train_leaves: list[str],
    trained_prototypes: torch.Tensor,
    examples: dict[str, tuple[list[torch.Tensor], list[torch.Tensor]]],
    device: str,
) -> SnapshotState:
    """Everything the engine derives from ``snapshot``: trained prototypes for known leaves, zero-shot ones
    (from name/aliases/description) for new leaves, few-shot examples blended in, level matrices."""
    leaves = [c.id for c in snapshot.leaves()]
    if not leaves:
        raise ValueError("the knowledge snapshot has no categories")
    train_pos = {c: i for i, c in enumerate(train_leaves)}
    new = [c for c in leaves if c not in train_pos]
    protos = torch.zeros(len(leaves), trained_prototypes.shape[1])  # an ensemble's are wider
    for j, c in enumerate(leaves):
        if c in train_pos:
            protos[j] = trained_prototypes[train_pos[c]]
    if new:  # zero-shot: prototypes of categories never trained on, from their name/aliases/description
        emb = encoder.sentence_embeddings([category_text(snapshot, c) for c in new]).to(device)
        p = F.normalize(model.head.text_prototypes(emb).float(), dim=-1).cpu()
        for c, v in zip(new, p, strict=True):
            protos[leaves.index(c)] = v
    img_protos = protos.clone()
    for c, (fz, iz) in examples.items():  # few-shot examples survive a snapshot swap
        if c in leaves:
            j = leaves.index(c)
            k = cfg.fewshot_prior
            protos[j] = F.normalize(k * protos[j] + torch.stack(fz).sum(0), dim=-1)
            img_protos[j] = F.normalize(k * img_protos[j] + torch.stack(iz).sum(0), dim=-1)
    chains = [snapshot.ancestors(c, include_self=True) for c in leaves]
    level_ids, mats = [], []
    for lvl in range(2):
        ids = sorted({ch[min(lvl, len(ch) - 1)] for ch in chains})
        pos = {c: i for i, c in enumerate(ids)}
        m = torch.zeros(len(leaves), len(ids))
        for j, ch in enumerate(chains):
            m[j, pos[ch[min(lvl, len(ch) - 1)]]] = 1
        level_ids.append(ids)
        mats.append(m)
    noise = {w for t in snapshot.noise_terms for w in KeywordModel.keys(t)}
    under: dict[str, list[int]] = {}
    by_name: dict[str, list[int]] = {}
    for j, ch in enumerate(chains):
        for c in ch:
            under.setdefault(c, []).append(j)
        by_name.setdefault(snapshot.category(leaves[j]).name.lower(), []).append(j)
    return SnapshotState(
        snapshot,
        EntityExtractor(snapshot),
        leaves,
        protos.to(device),
        img_protos.to(device),
        chains,
        level_ids,
        mats,
        noise,
        under,
        by_name,
    )


def entity_boost(st: SnapshotState, ents: list[Entity], trained: set[str], boost: float) -> torch.Tensor:
    """Logit bonus for untrained leaves the title names (decision-level use of the gazetteer).

    This is what makes a category added to the snapshot usable at once when a title names it.
    """
    b = torch.zeros(len(st.leaves))
    named_trained = False
    named: set[int] = set()
    for e in ents:
        if e.type != "product_type" or e.value not in st.under:
            continue
        idx = st.under[e.value]
        is_leaf = len(idx) == 1 and st.leaves[idx[0]] == e.value
        named_idx = set(idx) | set(st.by_name.get(st.snapshot.category(e.value).name.lower(), []))
        named |= named_idx
        for j in named_idx:
            # only categories without a trained prototype: the trained ones already read the title,
            # and a bonus there makes the model trust a title over a contradicting photo
            if st.leaves[j] not in trained:
                b[j] = max(float(b[j]), boost * (1.0 if is_leaf else 0.5))
            elif is_leaf:
                named_trained = True
    if named_trained:
        # the title names a trained leaf: a new (zero-/few-shot) category it does not name must not
        # take the item ("Kurtas" listings stay Kurtas when Kurtis are added)
        for j, c in enumerate(st.leaves):
            if c not in trained and j not in named:
                b[j] = -3.0 * boost
    return b


def photo_attention(att: np.ndarray, photo_size: tuple[int, int] | None, pad_square: bool) -> np.ndarray:
    """The spatial map over the photo only: a white-padded square input's margins are cropped away,
    so the map lines up with the photo it is drawn on."""
    if not pad_square or photo_size is None:
        return att
    w, h = photo_size
    if w == h:
        return att
    side = 4 * att.shape[-1]  # resample finer first so the crop falls between cells
    fine = np.asarray(
        PIL.Image.fromarray(att.astype(np.float32), mode="F").resize(
            (side, side), PIL.Image.Resampling.BILINEAR
        )
    )
    s = max(w, h)
    cw, ch = max(1, round(side * w / s)), max(1, round(side * h / s))
    left, top = (side - cw) // 2, (side - ch) // 2
    return cast("np.ndarray", np.ascontiguousarray(fine[top : top + ch, left : left + cw]))
