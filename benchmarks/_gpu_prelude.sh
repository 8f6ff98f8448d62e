# Sourced by benchmarks/gpu.sh and benchmarks/gpu_study.sh after they set OUT, WORK, PY, PARTS,
# BUDGET, GPU_SMOKE and ROOT: log everything to OUT/LOG_NAME, quiet Python's extras, and make
# rwenas and pymoo importable on a device machine that has torch but no pymoo (the wheels that
# benchmarks/gpu_prepare.sh put in .whl/ travel with the tree), with Fashion-MNIST from
# .gpu-data/.
gpu_prelude() {
  local log_name=$1 script=$2
  exec > >(tee -a "$OUT/$log_name") 2>&1
  export PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 MPLBACKEND=Agg TQDM_DISABLE=1
  echo "rwenas $script $(date -u +%FT%TZ) smoke=$GPU_SMOKE parts='$PARTS' budget=${BUDGET}s"
  echo "commit $(git rev-parse --short HEAD 2>/dev/null || echo '?'), work dir $WORK"
  local site=""
  if ! "$PY" -c 'import pymoo' 2>/dev/null; then
    if compgen -G ".whl/*.whl" >/dev/null; then
      if timeout 90 "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
           --upgrade --target "$WORK/site" .whl/*.whl; then
        site=$WORK/site
        PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}" "$PY" -c 'import pymoo, moocore' \
          || echo "WARNING: pymoo installed from .whl/ but does not import"
      else
        echo "WARNING: installing .whl/ failed; the parts that search cannot run"
      fi
    else
      echo "WARNING: pymoo missing and no .whl/ carried (run benchmarks/gpu_prepare.sh here)"
    fi
  fi
  export PYTHONPATH="$ROOT/src${site:+:$site}${PYTHONPATH:+:$PYTHONPATH}"
  if [[ -d .gpu-data ]]; then
    export RWENAS_DATA_DIR=$ROOT/.gpu-data
  fi
}
