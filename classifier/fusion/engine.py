"""Inference engine held once per worker process: gate -> light or full path -> knowledge check ->
high-resolution second pass on conflict -> calibrated, hierarchical prediction with review routing."""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
import time
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import TypeAlias, cast

import numpy as np
import PIL.Image
import torch
import torch.nn.functional as F

from classifier.fusion.artifacts import DEFAULT_CALIBRATION, load_model, read_json, weights_checksum
from classifier.fusion.complexity import estimate_complexity
from classifier.fusion.config import FusionConfig
from classifier.fusion.data import InvalidImageError, image_to_array, load_image
from classifier.fusion.encoder import TextEncoder
from classifier.fusion.engine_state import (
    LRUCache,
    SnapshotState,
    build_state,
    entity_boost,
    photo_attention,
    quantize_linear,
    routes_item,
)
from classifier.fusion.ensemble import EnsembleModel
from classifier.fusion.knowledge import KnowledgeSnapshot
from classifier.fusion.modeling import FusionModel, no_grad
from classifier.fusion.onnx_backbone import OnnxBackbone
from classifier.fusion.outcome import RawPrediction, build_prediction, mix_heads, names_type
from classifier.fusion.predictions import FusionPrediction, ListingInput
from classifier.fusion.routing import title_threshold
from classifier.fusion.text import KeywordModel
from classifier.fusion.verification import verify

__all__ = ["FusionPrediction", "InferenceEngine", "InvalidImageError", "ListingInput"]

# an image's cached backbone pass: (complexity, stage maps, image embedding, photo size)
_ImageHit: TypeAlias = tuple[float, tuple[torch.Tensor, ...], torch.Tensor, tuple[int, int]]
# a repeat listing's answer: (image sha1, title, snapshot version, id of the snapshot state, threshold)
_AnswerKey: TypeAlias = tuple[str, str, int, int, float]


class InferenceEngine:
    """Loaded fusion model + knowledge snapshot; thread-safe snapshot swap; batched prediction."""

    def __init__(
        self,
        model: FusionModel | EnsembleModel,
        cfg: FusionConfig,
        labels: Mapping[str, object],
        calibration: Mapping[str, object],
        snapshot: KnowledgeSnapshot,
        encoder: TextEncoder | None = None,
        device: str = "cpu",
        model_version: str = "dev",
        image_cache_size: int = 256,
    ) -> None:
        self.model, self.cfg, self.labels = model.to(device).eval(), cfg, labels
        self.device = device
        # calibration.json holds numbers only
        self.calibration = dict(DEFAULT_CALIBRATION, **cast("Mapping[str, float]", calibration))
        self.review_threshold = float(self.calibration["review_threshold"])
        self.model_version = model_version
        self.encoder = encoder or TextEncoder(cfg.text_checkpoint, cfg.max_tokens, device)
        self.train_leaves: list[str] = list(cast("list[str]", labels["leaves"]))
        self._trained_set = set(self.train_leaves)
        self.keywords = KeywordModel.from_dict(
            cast("Mapping[str, Mapping[str, float]]", labels.get("keywords", {}))
        )
        self.use_verification = cfg.use_verification
        self.use_gate = True
        self._examples: dict[str, tuple[list[torch.Tensor], list[torch.Tensor]]] = {}
        self._lock = threading.Lock()
        # backbone outputs of recently seen images (sha1 of the bytes): a repeat listing, or the same image
        # under another title, skips the vision backbone; cleared with the engine (model version)
        self._image_cache: LRUCache[str, _ImageHit] = LRUCache(image_cache_size)
        # whole answers for a repeat listing (same image bytes + title); keyed by the snapshot's version and
        # cleared whenever the snapshot or the few-shot examples change (the engine is the model version)
        self._answer_cache: LRUCache[_AnswerKey, FusionPrediction] = LRUCache(image_cache_size)
        with torch.no_grad():
            self._trained_protos = model.head.prototypes().detach().float().cpu()
        self._state: SnapshotState = self._build_state(snapshot)

    # ---- construction ----------------------------------------------------------------------------
    @classmethod
    def load(
        cls,
        model_dir: str | Path,
        *,
        device: str | None = None,
        snapshot: KnowledgeSnapshot | None = None,
        quantized: bool | None = None,
        onnx_cache_dir: Path | None = None,
    ) -> InferenceEngine:
        """Load a model directory (cuda if available, else cpu); ``snapshot`` defaults to the one trained with.

        ``quantized``: the compressed CPU serving build: INT8 dynamic quantisation of the fusion model's
        Linear layers, and the EfficientNet backbone on ONNX Runtime (same weights, exported once per model
        version into ``onnx_cache_dir``); None reads the ``FUSION_QUANTIZED`` environment variable
        (1/true/yes). MiniLM stays in full precision: quantised, it changed 2.8% of the decisions on `val`'s
        vague titles (the fusion layers 0.6%) for 13% more items/s.
        """
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        if quantized is None:
            quantized = os.environ.get("FUSION_QUANTIZED", "").strip().lower() in {"1", "true", "yes", "on"}
        model_dir = Path(model_dir)
        model, cfg, labels = load_model(model_dir, device)
        calib = read_json(model_dir, "calibration.json", DEFAULT_CALIBRATION)
        snap = snapshot or KnowledgeSnapshot.load(model_dir / "snapshot.json")
        version = f"{model_dir.resolve().name}-{weights_checksum(model_dir)}"
        if quantized and device == "cpu":
            model = quantize_linear(model)
            version += "-int8"
            if cfg.use_image and model.efficient:
                # an ensemble runs its first member's backbone whole and only the later blocks of the others
                # (on the shared stride-16 map), so the first member's is the one on ONNX Runtime
                first = model.members[0] if isinstance(model, EnsembleModel) else model
                first.backbone = OnnxBackbone(first.backbone, cfg.image_size, cache_dir=onnx_cache_dir)
                version += "-ort"
        return cls(model, cfg, labels, calib, snap, device=device, model_version=version)

    @staticmethod
    def _image_key(item: ListingInput) -> str | None:
        if isinstance(item.image, (bytes, bytearray, memoryview)):
            return hashlib.sha1(bytes(item.image)).hexdigest()
        return None

    def clear_caches(self) -> None:
        """Forget the repeat-listing answers and the cached backbone outputs (benchmarks time cold runs)."""
        self._image_cache.clear()
        self._answer_cache.clear()

    def reserve_image_cache(self, n: int) -> None:
        """Keep at least ``n`` images' backbone outputs (evaluation passes over the same split twice)."""
        self._image_cache.capacity = max(self._image_cache.capacity, int(n))

    @property
    def snapshot(self) -> KnowledgeSnapshot:
        return self._state.snapshot

    @property
    def snapshot_version(self) -> int:
        return self._state.snapshot.version

    def _amp(self) -> contextlib.AbstractContextManager[object]:
        if self.device.startswith("cuda"):
            return cast(
                "contextlib.AbstractContextManager[object]", torch.autocast("cuda", dtype=torch.float16)
            )
        return contextlib.nullcontext()

    def _build_state(self, snapshot: KnowledgeSnapshot) -> SnapshotState:
        return build_state(
            snapshot,
            model=self.model,
            cfg=self.cfg,
            encoder=self.encoder,
            train_leaves=self.train_leaves,
            trained_prototypes=self._trained_protos,
            examples=self._examples,
            device=self.device,
        )

    def set_snapshot(self, snapshot: KnowledgeSnapshot) -> None:
        """Swap the knowledge snapshot atomically (new categories become predictable zero-shot)."""
        state = self._build_state(snapshot)
        with self._lock:
            self._state = state
            self._answer_cache.clear()

    @no_grad
    def add_examples(self, category_id: str, items: list[ListingInput]) -> None:
        """Few-shot prototype update: blend the category's prototype with the examples' embeddings."""
        st = self._state
        if not st.snapshot.has_category(category_id) or category_id not in st.leaves:
            raise ValueError(f"unknown leaf category {category_id!r}")
        if not items:
            return
        imgs = [load_image(it.image) for it in items]
        pix = torch.from_numpy(
            np.stack([image_to_array(im, self.cfg.image_size, self.cfg.pad_square) for im in imgs])
        ).to(self.device)
        text = self.encoder.encode([it.title for it in items], st.extractor) if self.cfg.use_text else None
        with self._amp():
            feats = self.model.forward_features(pix if self.cfg.use_image else None, text)
        fz = list(F.normalize(feats.main.float(), dim=-1).cpu())
        iz = list(F.normalize(feats.image_emb.float(), dim=-1).cpu()) if feats.image_emb is not None else fz
        with self._lock:
            old = self._examples.get(category_id, ([], []))
            self._examples[category_id] = (old[0] + fz, old[1] + iz)
        self.set_snapshot(self._state.snapshot)

    def clear_examples(self) -> None:
        """Forget every few-shot example (prototypes go back to the trained / zero-shot ones)."""
        with self._lock:
            self._examples.clear()
        self.set_snapshot(self._state.snapshot)

    # ---- prediction --------------------------------------------------------------------------------
    def predict_batch(
        self, items: list[ListingInput], *, review_threshold: float | None = None
    ) -> list[FusionPrediction]:
        """Classify a batch. Raises :class:`InvalidImageError` (naming the item) for an undecodable image."""
        st = self._state
        thr = self.review_threshold if review_threshold is None else float(review_threshold)
        keys = []
        for it in items:
            k = self._image_key(it)
            keys.append(
                None if k is None else (k, (it.title or "").strip(), st.snapshot.version, id(st), thr)
            )
        answers = [self._answer_cache.get(k) if k is not None else None for k in keys]
        todo = [i for i, a in enumerate(answers) if a is None]
        if todo:
            fresh, _ = self._predict([items[i] for i in todo], review_threshold=review_threshold)
            for i, p in zip(todo, fresh, strict=True):
                answers[i] = p
                if keys[i] is not None:
                    self._answer_cache.put(cast("_AnswerKey", keys[i]), p)
        out = []
        # every answer is set now (cached or fresh)
        for i, (it, p) in enumerate(zip(items, cast("list[FusionPrediction]", answers), strict=True)):
            if i in todo:
                out.append(p)
            else:  # a repeat listing: the stored answer, under this item's key
                out.append(replace(p, key=it.key, latency_ms=0.0, top_k=dict(p.top_k)))
        return out

    def predict_detailed(
        self,
        items: list[ListingInput],
        *,
        review_threshold: float | None = None,
        force_path: str | None = None,
    ) -> tuple[list[FusionPrediction], list[RawPrediction]]:
        """Predictions plus the per-item raw scores (uncalibrated ``logits`` of the path taken,
        ``image_logits``, ``path``, ``findings``) over :attr:`leaves`: what calibration, evaluation and
        fine-tuning read. ``force_path``: "full" or "light" to bypass the gate (ablations, calibration)."""
        return self._predict(items, review_threshold=review_threshold, force_path=force_path)

    @property
    def example_counts(self) -> dict[str, int]:
        """Few-shot examples in force per leaf (given to `add_examples` since the last clear)."""
        with self._lock:
            return {c: len(fused) for c, (fused, _) in self._examples.items()}

    def untyped_threshold(self, review_threshold: float | None = None) -> float:
        """The review threshold of a title that names no product type: the calibrated ``untyped_threshold``
        (chosen on `val`'s untyped and vague titles), never below ``review_threshold`` (the engine's when
        None; a model calibrated without one holds every title to the review threshold)."""
        thr = self.review_threshold if review_threshold is None else float(review_threshold)
        untyped = self.calibration.get("untyped_threshold")
        return title_threshold(thr, None if untyped is None else float(untyped), names_type=False)

    @property
    def leaves(self) -> list[str]:
        """The candidate leaf ids of the current snapshot, in the order of the raw scores' columns."""
        return list(self._state.leaves)

    @no_grad
    def _predict(
        self,
        items: list[ListingInput],
        *,
        review_threshold: float | None = None,
        force_path: str | None = None,
    ) -> tuple[list[FusionPrediction], list[RawPrediction]]:
        if not items:
            return [], []
        st = self._state  # one snapshot for the whole batch
        cfg, dev = self.cfg, self.device
        thr = self.review_threshold if review_threshold is None else float(review_threshold)
        t_img, t_full = float(self.calibration["image_temperature"]), float(self.calibration["temperature"])
        # per-path / per-title temperatures (calibration.json without them: one full-path temperature)
        t_light = float(self.calibration.get("light_temperature", 1.0))
        t_untyped = float(self.calibration.get("untyped_temperature", t_full))
        # decision-level weights of the text head (typed titles) and the image head (untyped), chosen on val
        typed_w = float(self.calibration.get("typed_text_weight", 0.0))
        untyped_w = float(self.calibration.get("untyped_image_weight", 0.0))
        n = len(items)
        cost = np.zeros(n)  # ms per item
        t0 = time.perf_counter()
        keys = [self._image_key(it) for it in items]
        hits = [self._image_cache.get(k) if k is not None else None for k in keys]
        imgs: list[PIL.Image.Image | None] = [None] * n
        for i, it in enumerate(items):
            if hits[i] is None:
                try:
                    imgs[i] = load_image(it.image)
                except InvalidImageError as e:
                    raise InvalidImageError(f"item {i} (key {it.key!r}): {e}") from e
        miss = [i for i in range(n) if hits[i] is None]
        titles = [(it.title or "").strip() for it in items]
        ents = [st.extractor.extract(t) for t in titles]
        # a title that names no product type (a vague seller) is held to its own, stricter threshold
        thr_of = [thr if names_type(e) else self.untyped_threshold(thr) for e in ents]
        cplx = np.array(
            [
                cast("_ImageHit", hits[i])[0]
                if hits[i] is not None
                else estimate_complexity(cast("PIL.Image.Image", imgs[i])).score  # decoded above
                for i in range(n)
            ]
        )
        cost += (time.perf_counter() - t0) * 1000 / n

        raws: list[RawPrediction | None] = [None] * n
        boost = (
            torch.stack([entity_boost(st, e, self._trained_set, cfg.entity_boost) for e in ents])
            if cfg.use_text
            else torch.zeros(n, 1)
        )
        hs = None
        img_logits = None
        if cfg.use_image:
            t1 = time.perf_counter()
            with self._amp():
                if miss:
                    pix_m = torch.from_numpy(
                        np.stack(
                            [
                                image_to_array(
                                    cast("PIL.Image.Image", imgs[i]), cfg.image_size, cfg.pad_square
                                )
                                for i in miss
                            ]
                        )
                    ).to(dev)
                    emb_m, hs_m = self.model.forward_image_only(pix_m)
                    for k, i in enumerate(miss):
                        hit = (
                            float(cplx[i]),
                            tuple(h[k] for h in hs_m),
                            emb_m[k],
                            cast("PIL.Image.Image", imgs[i]).size,
                        )
                        hits[i] = hit
                        if keys[i] is not None:
                            self._image_cache.put(cast(str, keys[i]), hit)
                # the backbone's stages of every item (computed above or repeated images from the cache)
                done = cast("list[_ImageHit]", hits)  # every item's backbone pass is known now
                hs = tuple(torch.stack([done[i][1][j] for i in range(n)]) for j in range(len(done[0][1])))
                img_emb = torch.stack([done[i][2] for i in range(n)])
                img_logits = self.model.head(img_emb, st.image_prototypes).float().cpu()
            cost += (time.perf_counter() - t1) * 1000 / n
        full_idx = list(range(n))
        if cfg.use_image and self.use_gate and force_path in (None, "light"):
            kw = torch.tensor([self.keywords.scores(t, st.leaves, st.noise) for t in titles])
            if not cfg.use_text:  # an image-only model never reads the title
                kw = torch.zeros_like(kw)
            img_logits = cast("torch.Tensor", img_logits)  # set above (use_image)
            # the light path has its own, higher threshold (chosen on val: it is less precise at equal confidence)
            light_thr = float(self.calibration.get("light_threshold", 0.0))
            light = ((img_logits + boost) / t_img + cfg.keyword_weight * kw) / t_light
            p_img = torch.softmax(img_logits / t_img, -1)
            p_light = torch.softmax(light, -1)
            full_idx = []
            for i in range(n):
                j = int(p_light[i].argmax())
                ok = (force_path == "light" or not cfg.use_text) or (
                    cplx[i] <= cfg.gate_complexity_max
                    and float(p_img[i].max()) >= cfg.gate_confidence
                    and j == int(p_img[i].argmax())
                    and float(p_light[i, j]) >= max(thr_of[i], light_thr)
                )
                findings = verify(st.snapshot, st.leaves[j], ents[i]) if self.use_verification else []
                if ok and (force_path == "light" or not routes_item(findings)):
                    raws[i] = RawPrediction(light[i], "light", findings, None, img_logits[i])
                else:
                    full_idx.append(i)
        if full_idx and cfg.use_text:
            t2 = time.perf_counter()
            sub = [titles[i] for i in full_idx]
            text = self.encoder.encode(sub, st.extractor, [ents[i] for i in full_idx])
            sel = torch.tensor(full_idx, device=dev)
            with self._amp():
                feats = self.model.forward_features(
                    None,
                    text,
                    hidden_states=tuple(h[sel] for h in hs) if hs is not None else None,
                )
                fused = self.model.forward_head(feats, st.prototypes).logits.float().cpu()
                txt_logits = None
                if feats.text_emb is not None:
                    txt_logits = self.model.head(feats.text_emb, st.prototypes).float().cpu()
            typed = torch.tensor([names_type(ents[i]) for i in full_idx])

            def mixed(fused_part: torch.Tensor, rows: list[int]) -> torch.Tensor:
                """``rows``: positions in ``full_idx``."""
                return mix_heads(
                    fused_part,
                    None if txt_logits is None else txt_logits[rows],
                    None if img_logits is None else img_logits[[full_idx[k] for k in rows]],
                    title_names_type=typed[rows],
                    text_weight=typed_w,
                    image_weight=untyped_w,
                )

            logits = mixed(fused, list(range(len(full_idx)))) + boost[full_idx]
            att = feats.attention.float().cpu().numpy() if feats.attention is not None else None
            cost[full_idx] += (time.perf_counter() - t2) * 1000 / len(full_idx)
            hires = []
            for k, i in enumerate(full_idx):
                j = int(logits[k].argmax())
                findings = verify(st.snapshot, st.leaves[j], ents[i]) if self.use_verification else []
                raws[i] = RawPrediction(
                    logits[k],
                    "full",
                    findings,
                    None
                    if att is None
                    else photo_attention(att[k], cast("_ImageHit", hits[i])[3], cfg.pad_square),
                    None if img_logits is None else img_logits[i],
                    None if txt_logits is None else txt_logits[k],
                )
                if routes_item(findings) and cfg.use_image:
                    hires.append((k, i))
            if hires:  # conflict: a second look at a higher resolution, averaged with the first
                t3 = time.perf_counter()
                hk = [i for _, i in hires]
                for i in hk:  # a repeated image came from the cache undecoded
                    imgs[i] = imgs[i] if imgs[i] is not None else load_image(items[i].image)
                hp = torch.from_numpy(
                    np.stack(
                        [
                            image_to_array(
                                cast("PIL.Image.Image", imgs[i]), cfg.hires_image_size, cfg.pad_square
                            )
                            for i in hk
                        ]
                    )
                ).to(dev)
                text_h = self.encoder.encode([titles[i] for i in hk], st.extractor, [ents[i] for i in hk])
                with self._amp():
                    out_h = self.model(hp, text_h, st.prototypes)
                second = mixed(out_h.logits.float().cpu(), [k for k, _ in hires]) + boost[hk]
                for r, (k, i) in enumerate(hires):
                    lg = 0.5 * (logits[k] + second[r])
                    j = int(lg.argmax())
                    first = cast("RawPrediction", raws[i])  # the full pass's, set above
                    raws[i] = RawPrediction(
                        lg,
                        "full+hires",
                        verify(st.snapshot, st.leaves[j], ents[i]),
                        first.attention,
                        first.image_logits,
                        first.text_logits,
                    )
                cost[hk] += (time.perf_counter() - t3) * 1000 / len(hk)
        elif full_idx:  # image-only model: no text path
            img_logits = cast("torch.Tensor", img_logits)  # set above (use_image)
            for i in full_idx:
                raws[i] = RawPrediction(img_logits[i] / t_img, "light", [], None, img_logits[i])
        preds = []
        for i in range(n):
            raw = cast("RawPrediction", raws[i])  # every item took a path
            # light-path logits are already scaled by the image (and light) temperature; the full path's
            # temperature depends on whether the title names a product type (vague titles are less sure)
            t_path = t_full if names_type(ents[i]) else t_untyped
            probs = torch.softmax(raw.logits if raw.path == "light" else raw.logits / t_path, -1)
            preds.append(
                build_prediction(
                    st,
                    items[i],
                    probs,
                    raw,
                    ents[i],
                    cplx=float(cplx[i]),
                    latency=float(cost[i]),
                    thr=thr_of[i],
                    review_threshold=thr,
                    model_version=self.model_version,
                    trained=self._trained_set,
                )
            )
        return preds, cast("list[RawPrediction]", raws)
