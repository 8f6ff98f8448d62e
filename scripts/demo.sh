#!/usr/bin/env bash
# The main job: install what is needed, then a small real search (micro space, Fashion-MNIST,
# quick profile: population 10, 10 generations, 2000/500 images) with its Pareto front, plots
# and report in runs/demo. Running it again resumes/finishes the same run instead of starting
# over; delete runs/demo for a fresh one.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if [ -f runs/demo/run.db ]; then
  .venv/bin/rwenas search --resume runs/demo "$@"
else
  .venv/bin/rwenas search --space micro --dataset fashion-mnist --profile quick \
    --out runs/demo "$@"
fi
