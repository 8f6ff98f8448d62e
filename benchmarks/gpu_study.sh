#!/usr/bin/env bash
# benchmarks/gpu_study.sh OUT_DIR [--smoke] — the estimator study's and Table 1's trainings on a
# GPU machine, in one prepared run of at most 9 minutes (issues 11 and 12). NOT YET RUN ON A
# GPU: only its --smoke form has run (on a 2-core CPU).
#
# Parts, each under its own `timeout` and with a soft `--time-limit` inside it (no training
# starts after it; running ones finish and are committed), in this order:
#   env    GPU, torch, cores (benchmarks/gpu_study.py env)
#   bench  (a) the ground truth: continue the bench from the committed snapshot
#          docs/study/bench-fm-v2.db in OUT_DIR/bench at exactly its budget (C=8, 5 cells,
#          3 epochs on 10,000 images, batch 128, lr 0.05, all 10,000 test images; pool 120 +
#          the 30 search-visited members, the first 40 twice) on cuda with BENCH_WORKERS
#          process workers (default 12). The device is no part of a bench's budget, so this
#          is the same bench; every training records its device. Ends with a dry-run
#          `bench merge` into a copy of the snapshot (what would come back).
#   table  (b) Table 1 at a larger budget in OUT_DIR/table: C=16, 8 cells, 10 epochs on all
#          60,000 training images, batch 256, lr 0.1 (SPEC's reduced-training scale on the full
#          training set), 2 seeds, on cuda with TABLE_WORKERS workers (default 12). Its
#          searches start from the committed CPU table's (docs/study/table-fm, same search
#          settings: `--searches-from`), so both tables rank the same searches' picks where
#          those were finished; they run (or resume) in the background during part bench.
#   along  (c) Fig. 3 with what time is left: `study correlation --along-search` (3 seeds,
#          10 generations, population 10) on OUT_DIR/bench, its missing architectures trained
#          on cuda into OUT_DIR/bench/on-demand (ALONG_WORKERS, default 12).
# Every part is resumable: a second call with OUT_DIR's stores carried back continues it.
# summary.md and summary.json (rewritten after every part, so a cut-short run still reports)
# and gpu_study.log go to OUT_DIR.
#
# How to run it on the device machine (README, "On a GPU"):
#   1. here, once:  bash benchmarks/gpu_prepare.sh    (wheels into .whl/, data into .gpu-data/)
#   2. the device tool's call, from the repository root:
#        run(command="bash benchmarks/gpu_study.sh $OUT", carry=[".whl", ".gpu-data"],
#            timeout_s=580)
#   3. back here: `rwenas bench merge <files_at>/bench runs/bench-fm-v2` (README).
# To continue a cut-short part in a second call, copy the returned folders into an ignored
# folder of the tree that travels with carry (runs/ is ignored), e.g.
#   cp -r <files_at>/bench <files_at>/table runs/gpu-study/     (whole folders: -wal files too)
# then:
#        run(command="GPU_RESUME=runs/gpu-study GPU_PARTS='table' GPU_BUDGET_S=200 \
#            bash benchmarks/gpu_study.sh $OUT", carry=[".whl", ".gpu-data", "runs/gpu-study"],
#            timeout_s=240)
# Dry run on a CPU (tiny sizes, minutes):  bash benchmarks/gpu_study.sh /tmp/out --smoke
#
# Knobs (environment): PYTHON (default python3), GPU_PARTS (default "env bench table along"),
# GPU_BUDGET_S (whole script, default 540), GPU_RESUME (a folder with bench/, table/,
# along-cache/ and along-scores.db to continue), BENCH_WORKERS, TABLE_WORKERS,
# ALONG_WORKERS (12 each), BOX_BENCH (230), BOX_TABLE (200), TABLE_MARGIN (100: seconds of
# its box during which no table training starts, the longest a training may take),
# GPU_SMOKE=1 (same as --smoke).
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

OUT=${1:?usage: benchmarks/gpu_study.sh OUT_DIR [--smoke]}
[[ ${2:-} == --smoke ]] && GPU_SMOKE=1
export GPU_SMOKE=${GPU_SMOKE:-0}
mkdir -p "$OUT" && OUT=$(cd "$OUT" && pwd)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/rwenas-gpu-study.XXXXXX")
PY=${PYTHON:-python3}
PARTS=${GPU_PARTS:-env bench table along}
START=$SECONDS
RESERVE=15  # kept back for the last summary
if [[ $GPU_SMOKE == 1 ]]; then
  BUDGET=${GPU_BUDGET_S:-900}
else
  BUDGET=${GPU_BUDGET_S:-540}
fi

. benchmarks/_gpu_prelude.sh
gpu_prelude gpu_study.log gpu_study.sh
RW=("$PY" -m rwenas.cli)

# what each part runs: the real budgets, or tiny ones on the CPU
SNAPSHOT=docs/study/bench-fm-v2.db
BENCH_SETTINGS=(--dataset fashion-mnist --sampler mixed --size 120 --retest 40 --channels 8
                --layers 5 --epochs 3 --train-size 10000 --batch-size 128 --lr 0.05)
if [[ $GPU_SMOKE == 1 ]]; then
  DEVICE=cpu
  BENCH_WORKERS=${BENCH_WORKERS:-2} TABLE_WORKERS=${TABLE_WORKERS:-2}
  ALONG_WORKERS=${ALONG_WORKERS:-2}
  TINY_BENCH=(--dataset fashion-mnist --sampler mixed --size 5 --retest 1 --channels 4
              --layers 2 --epochs 1 --train-size 256 --test-size 256 --batch-size 64)
  TABLE_SETTINGS=(--dataset fashion-mnist --seeds 2 --pop-size 4 --generations 2
                  --search-train-size 200 --search-val-size 100 --search-channels 4
                  --search-layers 3 --rwe-epochs 2 --samples 10 --proxy jacob_cov
                  --channels 4 --layers 3 --epochs 1 --train-size 256 --test-size 256
                  --batch-size 64)
  SEARCHES_FROM=()
  ALONG_BENCH=bench-tiny
  ALONG_SETTINGS=(--seeds 1 --generations 2 --pop-size 4 --train-size 200 --val-size 100
                  --estimators params,madds,synflow)
  BOX_ENV=60 BOX_BENCH=${BOX_BENCH:-300} BOX_TABLE=${BOX_TABLE:-300}
  TABLE_MARGIN=${TABLE_MARGIN:-60} BENCH_MARGIN=60
else
  DEVICE=cuda
  BENCH_WORKERS=${BENCH_WORKERS:-12} TABLE_WORKERS=${TABLE_WORKERS:-12}
  ALONG_WORKERS=${ALONG_WORKERS:-12}
  TABLE_SETTINGS=(--dataset fashion-mnist --seeds 2 --pop-size 20 --generations 20
                  --proxy jacob_cov --channels 16 --layers 8 --epochs 10 --batch-size 256
                  --lr 0.1)
  SEARCHES_FROM=(--searches-from docs/study/table-fm)
  ALONG_BENCH=bench
  ALONG_SETTINGS=(--seeds 3 --generations 10 --pop-size 10)
  # Fig. 3 continues the CPU's along-search cache and reuses its scores: with the CPU's RWE
  # scores the searches visit exactly the architectures the CPU study trains (scores
  # recomputed on the GPU could differ in the last bits and steer the searches elsewhere),
  # so what comes back merges into runs/along-fm
  ALONG_CACHE_FROM=docs/study/along-fm.db ALONG_SCORES_FROM=docs/study/v2/scores.db
  BOX_ENV=30 BOX_BENCH=${BOX_BENCH:-230} BOX_TABLE=${BOX_TABLE:-200}
  TABLE_MARGIN=${TABLE_MARGIN:-100} BENCH_MARGIN=45
fi
TABLE=("${RW[@]}" study table --out "$OUT/table" "${TABLE_SETTINGS[@]}" --device "$DEVICE"
       --workers "$TABLE_WORKERS" --threads 1 "${SEARCHES_FROM[@]}" --quiet)

# a second call continues what a first one returned (GPU_RESUME: its bench/, table/,
# along-cache/ and along-scores.db)
if [[ -n ${GPU_RESUME:-} ]]; then
  for d in bench table along-cache along-scores.db; do
    if [[ -e $GPU_RESUME/$d && ! -e $OUT/$d ]]; then
      cp -r "$GPU_RESUME/$d" "$OUT/$d" && echo "continuing $OUT/$d from $GPU_RESUME/$d"
    fi
  done
fi

summary() {
  "$PY" benchmarks/gpu_study.py summary "$WORK" "$OUT" --along-bench "$ALONG_BENCH" \
    ${ALONG_CACHE:+--along-cache "$ALONG_CACHE"} \
    || echo "WARNING: summary failed"
}

left() { echo $(( BUDGET - (SECONDS - START) - RESERVE )); }

# part NAME BOX_SECONDS COMMAND... : run COMMAND under `timeout`, within what is left;
# $BOX is the part's box (for the command's own --time-limit)
part() {
  local name=$1 box=$2
  shift 2
  [[ " $PARTS " == *" $name "* ]] || return 0
  local l
  l=$(left)
  if (( l < 20 )); then
    echo "=== $name: SKIPPED, ${l}s left ==="
    printf '%s\tskipped\t0\n' "$name" >> "$WORK/status.tsv"
    summary
    return 0
  fi
  (( box > l )) && box=$l
  echo "=== $name: time box ${box}s ($(date -u +%T)) ==="
  local t0=$SECONDS rc
  timeout -k 10 "$box" "$@"
  rc=$?
  (( rc == 124 || rc == 137 )) && echo "=== $name: KILLED at its time box ==="
  echo "=== $name: rc=$rc in $(( SECONDS - t0 ))s ==="
  printf '%s\t%s\t%s\n' "$name" "$rc" "$(( SECONDS - t0 ))" >> "$WORK/status.tsv"
  summary
}

soft() { local s=$(( $1 - $2 )); (( s < 1 )) && s=1; echo "$s"; }

part env "$BOX_ENV" "$PY" benchmarks/gpu_study.py env --out "$WORK/env.json"

# (b)'s searches in the background while (a) trains: one process, RWE on the GPU, no
# training (a time limit spent at once); part table waits for it
SEARCH_PID=""
if [[ " $PARTS " == *" table "* && " $PARTS " == *" bench "* ]]; then
  box=$(( BOX_BENCH + 30 ))
  echo "=== table searches: in the background, time box ${box}s ==="
  ( timeout -k 10 "$box" "${TABLE[@]}" --time-limit 0.001 > "$OUT/table-searches.log" 2>&1
    echo "=== table searches: rc=$? ===" >> "$OUT/table-searches.log" ) &
  SEARCH_PID=$!
fi

# (a) the bench: the committed snapshot, continued here (or what GPU_RESUME brought)
if [[ " $PARTS " == *" bench "* ]]; then
  if [[ ! -f $OUT/bench/run.db ]]; then
    mkdir -p "$OUT/bench" && cp "$SNAPSHOT" "$OUT/bench/run.db"
  fi
  "$PY" benchmarks/gpu_study.py bench-state "$OUT/bench" --out "$WORK/bench_before.json"
fi
BOX=$BOX_BENCH
(( BOX > $(left) )) && BOX=$(left)
if [[ $GPU_SMOKE == 1 ]]; then
  # the real bench, continued on this machine's device: trains nothing (a time limit spent at
  # once), but checks that the snapshot continues here with its budget
  part bench "$BOX" "${RW[@]}" bench build "$OUT/bench" "${BENCH_SETTINGS[@]}" \
    --device "$DEVICE" --workers "$BENCH_WORKERS" --time-limit 0.001 --quiet
  # and a tiny bench that does train, with process workers
  [[ " $PARTS " == *" bench "* ]] && PARTS="$PARTS bench-tiny"
  part bench-tiny "$BOX" "${RW[@]}" bench build "$OUT/bench-tiny" "${TINY_BENCH[@]}" \
    --device "$DEVICE" --workers "$BENCH_WORKERS" --quiet
else
  part bench "$BOX" "${RW[@]}" bench build "$OUT/bench" "${BENCH_SETTINGS[@]}" \
    --device "$DEVICE" --workers "$BENCH_WORKERS" --time-limit "$(soft "$BOX" "$BENCH_MARGIN")" \
    --quiet
fi
# what would come back into the committed bench (the real merge runs on the CPU machine)
if [[ " $PARTS " == *" bench "* ]]; then
  mkdir -p "$WORK/snapshot" && cp "$SNAPSHOT" "$WORK/snapshot/run.db"
  PARTS="$PARTS merge-check"
  part merge-check 60 "${RW[@]}" bench merge "$OUT/bench" "$WORK/snapshot" --dry-run
fi

if [[ -n $SEARCH_PID ]]; then
  echo "=== waiting for the table searches ($(date -u +%T)) ==="
  wait "$SEARCH_PID"
  tail -n 3 "$OUT/table-searches.log"
fi
BOX=$BOX_TABLE
(( BOX > $(left) )) && BOX=$(left)
part table "$BOX" "${TABLE[@]}" --time-limit "$(soft "$BOX" "$TABLE_MARGIN")"

BOX=$(( $(left) ))
ALONG=("${RW[@]}" study correlation --along-search --bench "$OUT/$ALONG_BENCH"
       --out "$OUT/along" "${ALONG_SETTINGS[@]}" --workers "$ALONG_WORKERS"
       --device "$DEVICE" --quiet)
if [[ -n ${ALONG_CACHE_FROM:-} ]]; then
  ALONG_CACHE=$OUT/along-cache
  mkdir -p "$ALONG_CACHE"
  [[ -e $ALONG_CACHE/run.db ]] || cp "$ALONG_CACHE_FROM" "$ALONG_CACHE/run.db"
  [[ -e $OUT/along-scores.db ]] || cp "$ALONG_SCORES_FROM" "$OUT/along-scores.db"
  ALONG+=(--cache "$ALONG_CACHE" --score-cache "$OUT/along-scores.db")
fi
part along "$BOX" "${ALONG[@]}" --time-limit "$(soft "$BOX" 60)"

summary
echo "=== done in $(( SECONDS - START ))s; summary: $OUT/summary.md ==="
cat "$OUT/summary.md" 2>/dev/null
rm -rf "$WORK"
# every part ran (or was skipped) and the summary exists: success even when a part failed,
# whose status summary.md shows
[[ -f $OUT/summary.md ]]
