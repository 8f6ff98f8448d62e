#!/usr/bin/env bash
# The estimator study's ground truth on Fashion-MNIST (issue: "the estimator study, done so that
# it decides"): a resumable bench build in runs/bench-fm-v2, on one core (one worker, one
# thread, niced) so the other core stays free. Re-run it to continue after any interruption;
# every finished training is committed to runs/bench-fm-v2/run.db as it ends, and
# `bash scripts/bench_build.sh snapshot` copies a consistent snapshot to docs/study/.
set -euo pipefail
cd "$(dirname "$0")/.."
BENCH=runs/bench-fm-v2
SNAPSHOT=docs/study/bench-fm-v2.db
if [ "${1:-}" = snapshot ]; then  # snapshot [SRC_DB DEST_DB]: a consistent copy, journal off
  .venv/bin/python - "${2:-$BENCH/run.db}" "${3:-$SNAPSHOT}" <<'PY'
import sqlite3, sys
src, dst = sqlite3.connect(sys.argv[1]), sqlite3.connect(sys.argv[2] + ".tmp")
src.backup(dst)
dst.execute("PRAGMA journal_mode=DELETE")
dst.close(); src.close()
import os; os.replace(sys.argv[2] + ".tmp", sys.argv[2])
PY
  exit 0
fi
. scripts/_background.sh
restore_db "$BENCH" "$SNAPSHOT"  # continue from the committed snapshot on a fresh clone
# Budget: C=8, 5 cells, 3 epochs on 10,000 training images, tested on all 10,000 test images
# (chosen in the README's study section); the first 40 of the pool are trained twice.
yield_cpu
exec nice -n "${NICE:-5}" .venv/bin/rwenas bench build "$BENCH" --dataset fashion-mnist --sampler mixed \
  --size "${SIZE:-120}" --retest 40 --channels 8 --layers 5 --epochs 3 --train-size 10000 \
  --batch-size 128 --lr 0.05 --workers 1 --threads 1 "$@"
