#!/usr/bin/env bash
# The paper's Fig. 3 and Fig. 4 along NSGA-II searches, on the bench's ground truth (issue 11,
# part 4), on the CPU: 3 searches (population 10, 10 generations, RWE on 2000/500 images,
# seeds 0-2) whose visited architectures the bench lacks are trained at the bench's budget
# into an on-demand cache (runs/along-fm, never the bench's pool), two workers of one thread,
# niced like the bench build. Resumable: every finished training is kept; with TIME_LIMIT set
# (seconds) no training starts after that long, and running the script again continues.
# Scores are kept in docs/study/v2/scores.db, so a continuation does not score the searches
# again. Outputs (commit them with the snapshot):
#
#   docs/study/v2/along/        study correlation --along-search: every cheap estimator
#   docs/study/v2/along-pool/   the trained visited architectures as one pool (study correlation)
#   docs/study/v2/along-pool-rescored/  the same, RWE and 4 others scored again (seed 1)
#   docs/study/v2/along-pool-variants/  the same pool under RWE at lower noise and at the
#                               tuning's pick: rwe[l8], rwe[images-5k], rwe[inits-3] beside rwe
#   docs/study/v2/along-init/   study init: RWE under the 5 initialisation methods (the same
#                               searches: driven by RWE at its defaults, replayed from the
#                               stored scores)
#   docs/study/v2/along-init-pool/  the same scores, the visited architectures as one pool
#                               (intervals, paired differences against the default init)
#   docs/study/v2/along-retest.txt  bench retest: 30 of the cache's architectures trained again
#                               (second-run seed) into runs/along-retest, the reliability of
#                               the cache's single trainings (the cache itself only read)
#
#   bash scripts/along_run.sh                  # continue (from the committed snapshot)
#   TIME_LIMIT=9000 bash scripts/along_run.sh  # start no training after 2.5 h
#   bash scripts/along_run.sh snapshot         # copy the cache to docs/study/along-fm.db and
#                                              # the retest store to docs/study/along-retest.db
set -euo pipefail
cd "$(dirname "$0")/.."
BENCH=runs/bench-fm-v2
CACHE=runs/along-fm
SNAPSHOT=docs/study/along-fm.db
RETEST=runs/along-retest
RETEST_SNAPSHOT=docs/study/along-retest.db
OUT=${OUT:-docs/study/v2}
if [ "${1:-}" = snapshot ]; then
  bash scripts/bench_build.sh snapshot "$CACHE/run.db" "$SNAPSHOT"
  if [ -f "$RETEST/run.db" ]; then
    bash scripts/bench_build.sh snapshot "$RETEST/run.db" "$RETEST_SNAPSHOT"
  fi
  exit 0
fi
. scripts/_background.sh
restore_db "$BENCH" docs/study/bench-fm-v2.db
restore_db "$CACHE" "$SNAPSHOT"
restore_db "$RETEST" "$RETEST_SNAPSHOT"
yield_cpu
RW=(nice -n "${NICE:-5}" .venv/bin/rwenas)
COMMON=(--bench "$BENCH" --cache "$CACHE" --seeds 3 --generations 10 --pop-size 10
        --workers "${WORKERS:-2}" --threads 1 --score-cache "$OUT/scores.db" --quiet)
[ -n "${TIME_LIMIT:-}" ] && COMMON+=(--time-limit "$TIME_LIMIT")
mkdir -p "$OUT"
"${RW[@]}" study correlation --along-search "${COMMON[@]}" --out "$OUT/along" \
  | tee "$CACHE/along.log"
# every architecture the searches visited that the bench lacks, as one pool: the population
# a search must rank, with intervals (any number trained so far); RWE and the cheap proxies
# scored again with seed 1, since the searches chose these architectures on seed 0's RWE
POOL=(--bench "$CACHE" --sources on_demand --score-cache "$OUT/scores.db" --threads 1 --quiet)
"${RW[@]}" study correlation "${POOL[@]}" --out "$OUT/along-pool"
"${RW[@]}" study correlation "${POOL[@]}" --estimators rwe,jacob_cov,synflow,params,madds \
  --rescore-seed 1 --out "$OUT/along-pool-rescored"
# RWE's variants that were better on the tuning half (none beyond noise there), on this
# population: does less noise, or the tuning's pick (l8), make RWE rank it? (~1.5 h of a core)
"${RW[@]}" study correlation "${POOL[@]}" --estimators rwe,jacob_cov,synflow,params,madds \
  --rwe-variants l8,images-5k,inits-3 --out "$OUT/along-pool-variants"
if grep -q "left at the time limit" "$CACHE/along.log"; then
  echo "Fig. 4 waits until Fig. 3's trainings are complete: run this script again"
  exit 0
fi
# the same searches, so every architecture is trained by now: this only scores and correlates
"${RW[@]}" study init "${COMMON[@]}" --out "$OUT/along-init"
"${RW[@]}" study init --pool "${POOL[@]}" --out "$OUT/along-init-pool"
# the reliability of the cache's single trainings: a seeded sample of 30 trained again with
# the second-run seed into a separate store (~50 min on two cores); the cache and every table
# above stay as they are
RETEST_ARGS=(--count 30 --sources on_demand --workers "${WORKERS:-2}" --threads 1 --quiet)
[ -n "${TIME_LIMIT:-}" ] && RETEST_ARGS+=(--time-limit "$TIME_LIMIT")
"${RW[@]}" bench retest "$CACHE" "$RETEST" "${RETEST_ARGS[@]}" | tee "$OUT/along-retest.txt"
