#!/usr/bin/env bash
# All benchmarks, one after another; each prints its figures. They are not tests: nothing
# passes or fails on time. Needs PostgreSQL and Redis (like tests/run.sh) and the catalogue
# in ../shared/data/fashion. `--quick` runs every benchmark on a small size (minutes, not hours).
#
#   bash tests/bench/run.sh            # the sizes the issues name (about 1.5 h on 2 CPU cores)
#   bash tests/bench/run.sh --quick    # smoke-sized figures
set -euo pipefail
cd "$(dirname "$0")/../.."
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONUNBUFFERED=1
PY=.venv/bin/python
DATA=${FUSION_DATA_DIR:-../shared/data/fashion}

if [ "${1:-}" = "--quick" ]; then
  fusion=(--variants "" --limit 300)
  pipeline=(--n 200)
  review=(--tasks 100000 --refill)
  knowledge=(--brands 10000 --categories 1000 --rounds 3)
  finetune=(--corrections 100 --epochs 1)
  attention=(--quick)
else
  fusion=(--variants image,text,no_fusion,no_attention,full --epochs 2)
  pipeline=(--n 2000)
  review=(--tasks 1000000 --refill)
  knowledge=()
  finetune=(--category "Footwear > Flip Flops > Flip Flops")
  attention=()
fi

echo "### fusion model: accuracy per level, ablations, vague titles, calibration, emerging types, throughput"
$PY tests/bench/bench_fusion.py --data "$DATA" --model fusionreview/demo/model "${fusion[@]}"
echo "### pipeline: API -> worker -> routed, listings/s and per-stage latency"
$PY tests/bench/bench_pipeline.py "${pipeline[@]}"
echo "### review queue: claim-next and queue page under 20 concurrent auditors"
$PY tests/bench/bench_review_queue.py "${review[@]}"
echo "### knowledge graph: snapshot build/memory at scale, publish-to-first-use"
$PY tests/bench/bench_knowledge_snapshot.py "${knowledge[@]}"
echo "### fine-tuning: frozen-set accuracy kept, corrected category improved, time per job"
$PY tests/bench/bench_finetune.py --data "$DATA" "${finetune[@]}"
echo "### knowledge check: correct predictions it holds, conflict precision, demo queue (targets <= 1%, >= 60%, <= 5%)"
$PY tests/bench/bench_knowledge_precision.py --data "$DATA" $([ "${1:-}" = "--quick" ] && echo "--limit 300")
echo "### attention map: share of its mass inside the product's bounding box (target >= 70%)"
$PY tests/bench/bench_attention.py --data "$DATA" "${attention[@]}"
echo "### ops pages: brand list/search paging and the version diff at 50,000 brands (time, queries)"
$PY tests/bench/bench_brands.py $([ "${1:-}" = "--quick" ] && echo "--brands 5000")
echo "### review loop over HTTP: gunicorn, 1 and 20 logged-in auditors (targets p95 <= 50 ms, >= 20 decisions/s)"
$PY tests/bench/bench_review_http.py $([ "${1:-}" = "--quick" ] && echo "--tasks 20000 --seconds 10")
echo "### review thresholds (val only): which rule keeps 99% precision on the half of val it was not chosen on"
$PY tests/bench/bench_fusion_v2_threshold.py --data "$DATA" \
  $([ "${1:-}" = "--quick" ] && echo "--splits 50 --out var/bench_fusion_v2_threshold_quick.json")
