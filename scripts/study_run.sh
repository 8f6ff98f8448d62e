#!/usr/bin/env bash
# The estimator study on the bench that scripts/bench_build.sh builds (issue 11), in the order
# that keeps the confirmation honest: RWE's open settings are chosen on the tuning half only,
# then the chosen variant and every other estimator are reported on the confirmation half;
# the whole pool, per source, is reported as well. Outputs go to docs/study/v2/ (commit them):
#
#   bench.txt        rwenas bench show: size, sources, budget, reliability
#   tune/            rwenas study tune (tuning half): tune.md, tune.csv, picked.json
#   confirmation/    rwenas study correlation --half confirmation --tuned picked.json
#   init/            rwenas study init --pool --half confirmation (Fig. 4 on the pool)
#   pool/            rwenas study correlation on the whole pool (RWE at its defaults)
#   search-retest.txt  rwenas bench retest: the 30 search-visited members trained again into
#                    runs/bench-search-retest (`bash scripts/study_run.sh snapshot` copies it to
#                    docs/study/bench-search-retest.db), the reliability of their single runs
#
# Every estimator score is kept in docs/study/v2/scores.db (committed), so a re-run on a grown
# bench scores only the new architectures. One torch thread, niced, like the bench build:
#
#   bash scripts/study_run.sh                 # uses runs/bench-fm-v2 (or the committed snapshot)
#   BENCH=DIR OUT=DIR bash scripts/study_run.sh
set -euo pipefail
cd "$(dirname "$0")/.."
BENCH=${BENCH:-runs/bench-fm-v2}
OUT=${OUT:-docs/study/v2}
SNAPSHOT=docs/study/bench-fm-v2.db
SEARCH_RETEST=runs/bench-search-retest
SEARCH_RETEST_SNAPSHOT=docs/study/bench-search-retest.db
if [ "${1:-}" = snapshot ]; then  # the search members' retest store -> docs/study/
  exec bash scripts/bench_build.sh snapshot "$SEARCH_RETEST/run.db" "$SEARCH_RETEST_SNAPSHOT"
fi
. scripts/_background.sh
restore_db "$BENCH" "$SNAPSHOT"
restore_db "$SEARCH_RETEST" "$SEARCH_RETEST_SNAPSHOT"
yield_cpu
RW=(nice -n "${NICE:-5}" .venv/bin/rwenas)
# The scores are kept beside the outputs and committed with them, so `study correlation
# --score-cache $OUT/scores.db` reproduces the tables exactly on any machine (recomputed RWE
# scores can differ in the last bits between processors).
COMMON=(--bench "$BENCH" --threads 1 --score-cache "${SCORES:-$OUT/scores.db}" --quiet)
mkdir -p "$OUT"
"${RW[@]}" bench show "$BENCH" | tee "$OUT/bench.txt"
# Tuning half: each RWE variant with its seconds per architecture; the pick is the best
# Spearman within ${TUNE_BUDGET:-5} s per architecture.
"${RW[@]}" study tune "${COMMON[@]}" --out "$OUT/tune" --budget "${TUNE_BUDGET:-5}"
# Confirmation half: the picked variant as 'rwe', against params, MAdds and every proxy.
"${RW[@]}" study correlation "${COMMON[@]}" --out "$OUT/confirmation" --half confirmation \
  --tuned "$OUT/tune/picked.json"
# Fig. 4 on the pool: RWE under the five initialisation methods, confirmation half, paired
# differences against the default initialisation.
"${RW[@]}" study init --pool "${COMMON[@]}" --out "$OUT/init" --half confirmation
# The whole pool, per source, RWE at its shipped defaults (not a confirmation: the defaults
# predate this bench, but part of the pool is the tuning half).
"${RW[@]}" study correlation "${COMMON[@]}" --out "$OUT/pool"
# The reliability of the 30 search-visited members' single trainings: each trained again with
# the second-run seed into a separate store (~25 min on two cores; the bench is only read).
"${RW[@]}" bench retest "$BENCH" "$SEARCH_RETEST" --count 30 --sources search \
  --workers "${WORKERS:-2}" --threads 1 --quiet | tee "$OUT/search-retest.txt"
echo "study outputs in $OUT"
