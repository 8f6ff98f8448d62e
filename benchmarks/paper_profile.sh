#!/usr/bin/env bash
# Wall time of `rwenas search --profile paper` on this machine, extrapolated (issue 14, item 3):
# the paper profile is 600 evaluations (population 20, 30 generations) on the full search split
# (Fashion-MNIST: 48,000/12,000 images); running all of it takes hours here, so this times the
# first generation of the same search (EVALS evaluations), on the full split and on
# 10,000/2,000 images, and multiplies the steady-state wall seconds per evaluation (between
# the first and the last evaluation's completion, so worker start-up is not counted) by 600
# (no cache hits assumed: a real run has a few, so this is an upper estimate). Each split is
# timed with every executor in EXECUTORS, interleaved in one run: `local` (one process, the
# batches of each feature pass shared among one thread per core) and `process` (one
# single-threaded worker process per core, evaluating different architectures at once). Run
# it on an idle machine.
#
#   bash benchmarks/paper_profile.sh [EVALS]            # default 6 evaluations per run
#   SPLITS="10k" EXECUTORS="local process" REPEAT=2 bash benchmarks/paper_profile.sh 10
set -euo pipefail
cd "$(dirname "$0")/.."
EVALS=${1:-6}
SPLITS=${SPLITS:-full 10k}
EXECUTORS=${EXECUTORS:-local process}
REPEAT=${REPEAT:-1}
CORES=$(nproc)
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
for split in $SPLITS; do
  sizes=()
  [ "$split" = 10k ] && sizes=(--train-size 10000 --val-size 2000)
  for rep in $(seq "$REPEAT"); do
    for ex in $EXECUTORS; do
      run=(--executor "$ex")
      [ "$ex" = process ] && run+=(--workers "$CORES")
      dir="$OUT/$split-$ex-$rep"
      start=$(date +%s.%N)
      .venv/bin/rwenas search --profile paper --dataset fashion-mnist "${sizes[@]}" "${run[@]}" \
        --pop-size "$EVALS" --generations 1 --out "$dir" --quiet > /dev/null
      end=$(date +%s.%N)
      .venv/bin/python - "$dir/run.db" "$split" "$ex" "$start" "$end" <<'PY'
import sqlite3, statistics, sys
from datetime import datetime
db, split, ex, start, end = sys.argv[1], sys.argv[2], sys.argv[3], *map(float, sys.argv[4:])
con = sqlite3.connect(db)
rows = con.execute("SELECT seconds, created FROM evaluations WHERE status = 'ok'").fetchall()
per = [s for s, _ in rows]
done = sorted(datetime.fromisoformat(c).timestamp() for _, c in rows)
each = (done[-1] - done[0]) / (len(done) - 1)  # steady state: start-up not counted
gen_s = con.execute("SELECT seconds FROM generations WHERE generation = 0").fetchone()[0]
print(f"{split:>4} split, {ex:>7}: {len(per)} evaluations, {each:.2f} s of wall time each "
      f"(the generation {gen_s:.1f} s with start-up; one evaluation alone {statistics.mean(per):.1f}"
      f" s, min {min(per):.1f}, max {max(per):.1f}); x600 = {600 * each / 3600:.2f} h; command "
      f"{end - start:.0f} s incl. data loading", flush=True)
PY
    done
  done
done
