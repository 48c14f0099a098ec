"""Knowledge-check precision: does the knowledge check hold back model errors, or correct predictions?

usage:
  .venv/bin/python tests/bench/bench_knowledge_precision.py --data ../shared/data/fashion \
      [--model fusionreview/demo/model] [--split test] [--limit N] [--records-out var/bench/kp.json]

Runs the fusion engine (`InferenceEngine.predict_batch`, what `python -m classifier.fusion predict`
calls) on the ``--split`` rows with full and vague titles, against a knowledge snapshot built from
the whole ``train`` catalogue (brands with their support, duplicate categories merged) — the same
builder the `knowledge_import_catalogue` command and the demo use. Each prediction is routed with
`classifier.fusion.routing.route` at the model's own review threshold. Printed per title kind:

- share of correct predictions routed by a knowledge finding (target <= 1%), also among the
  correct predictions whose confidence clears the threshold;
- conflict precision: share of knowledge-routed items where the model was in fact wrong (>= 60%);
- model errors caught by the knowledge check that confidence alone would have auto-accepted;
- auto-accept share and precision with confidence alone, and with the knowledge check;
- the same figures for the previous check (a brand not seen with the sub-category, or a title
  naming another type, was a conflict), re-applied to the same predictions, for comparison.

Then the demo: its 300-listing sample (`fusionreview/demo/sample/catalogue.csv`) against the demo's
own graph (`fusionreview/demo/sample/knowledge.json`, what `demo_setup` loads): of the queued
items, the share that are correct predictions held by the knowledge check (target <= 5%).

Works with whichever model is in ``--model``. Prints figures; passes or fails nothing. Gold labels
of categories the graph merged are compared through the merge (`KnowledgeSnapshot.redirect`).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from classifier.fusion.catalogue_snapshot import snapshot_from_catalogue  # noqa: E402
from classifier.fusion.data import read_catalogue, vague_titles_via_tool  # noqa: E402
from classifier.fusion.knowledge import KnowledgeSnapshot  # noqa: E402
from classifier.fusion.routing import RouteReason, route  # noqa: E402

DEMO_DIR = ROOT / "fusionreview" / "demo" / "sample"
KNOWLEDGE_REASONS = {RouteReason.KNOWLEDGE_CONFLICT, RouteReason.UNKNOWN_CATEGORY}


def _predict(engine, rows, base: Path, titles: dict[str, str] | None, batch: int) -> list[dict]:
    from classifier.fusion.engine import InvalidImageError, ListingInput

    out: list[dict] = []
    for i in range(0, len(rows), batch):
        chunk = rows[i : i + batch]
        items = [
            ListingInput((base / r.image).read_bytes(), (titles or {}).get(r.id, r.title), key=r.id)
            for r in chunk
        ]
        try:
            preds = engine.predict_batch(items)
        except InvalidImageError:
            preds = []
            for item in items:  # one bad picture must not lose the others
                try:
                    preds += engine.predict_batch([item])
                except InvalidImageError as exc:
                    print(f"  skipping {item.key}: {exc}")
        by_key = {p.key: p for p in preds}
        for r, item in zip(chunk, items, strict=True):
            p = by_key.get(r.id)
            if p is None:
                continue
            out.append(
                {
                    "id": r.id,
                    "title": item.title,
                    "gold": r.leaf_id,
                    "pred": p.category_id,
                    "confidence": float(p.confidence),
                    "findings": list(p.knowledge_findings or []),
                    "entities": list(p.entities or []),
                }
            )
        print(f"  {len(out)}/{len(rows)}", end="\r", flush=True)
    print()
    return out


def figures(records: list[dict], snapshot: KnowledgeSnapshot, threshold: float) -> dict[str, float]:
    """The issue's figures for one set of routed predictions."""
    n = len(records)
    correct = knowledge = correct_held = wrong_held = 0
    confident_correct = confident_correct_held = caught = 0
    accept_before = accept_before_ok = accept_after = accept_after_ok = 0
    for r in records:
        ok = snapshot.redirect(r["gold"]) == r["pred"]
        decision = route(confidence=r["confidence"], threshold=threshold, findings=r["findings"])
        held = any(reason in KNOWLEDGE_REASONS for reason in decision.reasons)
        confident = r["confidence"] >= threshold
        correct += ok
        knowledge += held
        correct_held += ok and held
        wrong_held += (not ok) and held
        confident_correct += ok and confident
        confident_correct_held += ok and confident and held
        caught += (not ok) and confident and held
        accept_before += confident
        accept_before_ok += confident and ok
        accept_after += not decision.needs_review
        accept_after_ok += (not decision.needs_review) and ok
    pct = lambda a, b: round(100.0 * a / b, 2) if b else 0.0  # noqa: E731
    return {
        "items": n,
        "accuracy_pct": pct(correct, n),
        "routed_by_knowledge": knowledge,
        "correct_routed_by_knowledge_pct": pct(correct_held, correct),
        "confident_correct_routed_by_knowledge_pct": pct(confident_correct_held, confident_correct),
        "conflict_precision_pct": pct(wrong_held, knowledge),
        "errors_caught_beyond_confidence": caught,
        "auto_accept_share_before_pct": pct(accept_before, n),
        "auto_accept_precision_before_pct": pct(accept_before_ok, accept_before),
        "auto_accept_share_after_pct": pct(accept_after, n),
        "auto_accept_precision_after_pct": pct(accept_after_ok, accept_after),
    }


def legacy_findings(snapshot: KnowledgeSnapshot, leaf_id: str, entities: list[dict]) -> list[dict]:
    """The check before evidence counted (for comparison): a brand not seen with the predicted
    sub-category, or a title naming another type, was a conflict whatever the brand's record."""
    from classifier.fusion.verification import _norm_name

    out: list[dict] = []
    if not snapshot.has_category(leaf_id):
        return [{"code": "unknown_category", "message": "", "severity": "conflict"}]
    chain = snapshot.ancestors(leaf_id, include_self=True)
    chain_names = {_norm_name(snapshot.category(c).name) for c in chain}
    for e in entities:
        if e["type"] == "brand" and e["start"] == 0:
            brand = snapshot.find_brand(e["value"])
            known = [c for c in (brand.category_ids if brand else ()) if snapshot.has_category(c)]
            if known:
                level = min(1, len(chain) - 1)
                sold_at = set()
                for c in known:
                    a = snapshot.ancestors(c, include_self=True)
                    sold_at.add(a[min(level, len(a) - 1)])
                if chain[level] not in sold_at and not any(
                    leaf_id in snapshot.ancestors(c, include_self=True) for c in known
                ):
                    out.append({"code": "brand_category", "message": "", "severity": "conflict"})
        elif e["type"] == "product_type" and snapshot.has_category(e["value"]):
            related = e["value"] in chain or leaf_id in snapshot.ancestors(e["value"], include_self=True)
            same = (
                _norm_name(snapshot.category(e["value"]).name) in chain_names
                or _norm_name(e["text"]) in chain_names
            )
            if not (same or related):
                out.append({"code": "title_type", "message": "", "severity": "conflict"})
    return out


def demo_figures(records: list[dict], snapshot: KnowledgeSnapshot, threshold: float) -> dict[str, float]:
    queued = held_correct = 0
    for r in records:
        decision = route(confidence=r["confidence"], threshold=threshold, findings=r["findings"])
        if not decision.needs_review:
            continue
        queued += 1
        ok = snapshot.redirect(r["gold"]) == r["pred"]
        held_correct += ok and any(reason in KNOWLEDGE_REASONS for reason in decision.reasons)
    return {
        "items": len(records),
        "queued": queued,
        "correct_held_by_knowledge": held_correct,
        "queued_correct_held_by_knowledge_pct": round(100.0 * held_correct / queued, 2) if queued else 0.0,
    }


def _print(title: str, figs: dict[str, float]) -> None:
    print(f"\n{title}")
    for key, value in figs.items():
        print(f"  {key:<44} {value}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "fashion"))
    ap.add_argument("--model", default=str(ROOT / "fusionreview" / "demo" / "model"))
    ap.add_argument("--split", default="test")
    ap.add_argument("--limit", type=int, default=0, help="first N rows of the split (0: all)")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-demo", action="store_true", help="skip the demo sample figure")
    ap.add_argument("--records-out", default="", help="write every routed prediction here (JSON)")
    a = ap.parse_args()

    import torch

    torch.set_num_threads(a.threads)
    from classifier.fusion.engine import InferenceEngine

    data = Path(a.data)
    catalogue = data / "catalogue.csv"
    snapshot = snapshot_from_catalogue(catalogue, splits=("train",), merge_duplicates=True)
    print(
        f"snapshot from train: {len(snapshot.categories)} categories, {len(snapshot.brands)} brands, "
        f"{len(json.loads(dict(snapshot.meta).get('merged', '{}')))} merged categories"
    )
    t0 = time.perf_counter()
    engine = InferenceEngine.load(a.model, snapshot=snapshot)
    threshold = float(engine.review_threshold)
    print(f"model {a.model} (version {engine.model_version}), review threshold {threshold:.4f}")
    rows = read_catalogue(catalogue, (a.split,))
    if a.limit:
        rows = rows[: a.limit]
    with tempfile.TemporaryDirectory() as tmp:
        vague = vague_titles_via_tool(data, Path(tmp) / "catalogue_vague.csv")
    if vague is None:
        from classifier.fusion.data import vague_titles

        vague = vague_titles(rows, read_catalogue(catalogue))
    results: dict[str, dict] = {}
    records_all: dict[str, list[dict]] = {}
    for kind, titles in (("full titles", None), ("vague titles", vague)):
        print(f"{a.split}, {kind}: {len(rows)} rows")
        records = _predict(engine, rows, data, titles, a.batch_size)
        records_all[kind] = records
        results[kind] = figures(records, snapshot, threshold)
        _print(f"== {a.split}, {kind} ==", results[kind])
    both = figures(records_all["full titles"] + records_all["vague titles"], snapshot, threshold)
    _print(f"== {a.split}, full and vague together ==", both)
    results["together"] = both
    legacy = [
        {**r, "findings": legacy_findings(snapshot, r["pred"], r["entities"])}
        for kind in ("full titles", "vague titles")
        for r in records_all[kind]
    ]
    results["previous_check"] = figures(legacy, snapshot, threshold)
    _print(
        "== for comparison: the previous check (absence = conflict), re-applied to the same predictions ==",
        results["previous_check"],
    )

    demo_graph = DEMO_DIR / "knowledge.json"
    if not a.no_demo and demo_graph.exists():
        demo_snapshot = KnowledgeSnapshot.load(demo_graph)
        engine.set_snapshot(demo_snapshot)
        demo_rows = read_catalogue(DEMO_DIR / "catalogue.csv")
        print(f"demo sample: {len(demo_rows)} rows against {demo_graph.relative_to(ROOT)}")
        demo_records = _predict(engine, demo_rows, DEMO_DIR, None, a.batch_size)
        results["demo"] = demo_figures(demo_records, demo_snapshot, threshold)
        _print("== demo sample (target: queued_correct_held_by_knowledge_pct <= 5) ==", results["demo"])
        records_all["demo"] = demo_records
    print(f"\n{time.perf_counter() - t0:.0f} s")
    if a.records_out:
        Path(a.records_out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.records_out).write_text(
            json.dumps({"threshold": threshold, "figures": results, "records": records_all}, indent=1)
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
