#!/usr/bin/env bash
# Wall time of `rwenas search --profile paper` on this machine, extrapolated (issue 14, item 3):
# the paper profile is 600 evaluations (population 20, 30 generations) on the full search split
# (Fashion-MNIST: 48,000/12,000 images); running all of it takes hours here, so this times the
# first evaluations of the same search, once on the full split and once on 10,000/2,000
# images, and multiplies the mean seconds per evaluation by 600 (no cache hits assumed: a
# real run has a few, so this is an upper estimate). Run it on an otherwise idle machine.
#
#   bash benchmarks/paper_profile.sh [EVALS]     # default 6 evaluations per split
set -euo pipefail
cd "$(dirname "$0")/.."
EVALS=${1:-6}
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
for split in full 10k; do
  sizes=()
  [ "$split" = 10k ] && sizes=(--train-size 10000 --val-size 2000)
  start=$(date +%s.%N)
  .venv/bin/rwenas search --profile paper --dataset fashion-mnist "${sizes[@]}" \
    --pop-size "$EVALS" --generations 1 --out "$OUT/$split" --quiet > /dev/null
  end=$(date +%s.%N)
  .venv/bin/python - "$OUT/$split/history.csv" "$split" "$start" "$end" "$EVALS" <<'PY'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1])))
split, start, end, n = sys.argv[2], float(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5])
per = [float(r["seconds"]) for r in rows if r["status"] == "ok"]
wall = end - start
print(f"{split:>4} split: {len(per)} evaluations, {statistics.mean(per):.1f} s each "
      f"(min {min(per):.1f}, max {max(per):.1f}); command wall time {wall:.0f} s incl. "
      f"data loading; x600 evaluations = {600 * statistics.mean(per) / 3600:.2f} h "
      f"(+ {wall - sum(per):.0f} s start-up)")
PY
done
