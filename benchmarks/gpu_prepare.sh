#!/usr/bin/env bash
# Run HERE, on the development machine (it needs the network), before benchmarks/gpu.sh runs on
# the GPU machine (which has none). It fills two git-ignored folders of the repository root,
# which the run carries:
#   .whl/       pymoo and the packages it needs that the GPU machine's image lacks, as wheels
#               for CPython 3.12 on x86-64 manylinux (the image has numpy, scipy, matplotlib,
#               tqdm, torch, wrapt, pytest; the versions below are those tested here)
#   .gpu-data/  fashion-mnist/*.gz, the four Fashion-MNIST idx files (gpu.sh points
#               RWENAS_DATA_DIR at .gpu-data)
# Then, from the repository root, the device tool's call is:
#   run(command="bash benchmarks/gpu.sh $OUT", carry=[".whl", ".gpu-data"], timeout_s=540)
#
# usage: bash benchmarks/gpu_prepare.sh        (PYTHON=... picks the interpreter running pip)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}

WHEELS=(
  pymoo==0.6.2 moocore==0.3.2 cffi==2.1.1 pycparser==3.12 platformdirs==4.14.8
  autograd==1.9.1 cma==4.5.0 alive-progress==3.3.0 about-time==4.2.1 graphemeu==0.7.2
  deprecated==1.3.1
)

mkdir -p .whl .gpu-data
for dir in .whl .gpu-data; do  # ignored (.gitignore), so only `carry` takes them along
  git check-ignore -q "$dir" || { echo "$dir is not git-ignored" >&2; exit 1; }
done

rm -rf .whl
mkdir -p .whl
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
  --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
  --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl "${WHEELS[@]}"
count=$(ls .whl/*.whl | wc -l)
if [[ $count -ne ${#WHEELS[@]} ]]; then
  echo "expected ${#WHEELS[@]} wheels, got $count" >&2
  exit 1
fi

# Fashion-MNIST: where rwenas.data looks for it, in the same order
base=${RWENAS_DATA_DIR:-data}
src=""
for dir in "$base/fashion-mnist" "$base" /usr/share/datasets/fashion-mnist; do
  if [[ -f $dir/train-images-idx3-ubyte.gz || -f $dir/train-images-idx3-ubyte ]]; then
    src=$dir
    break
  fi
done
if [[ -z $src ]]; then
  echo "Fashion-MNIST not found (looked in $base/fashion-mnist, $base," \
       "/usr/share/datasets/fashion-mnist); download it first (rwenas evaluate --download)" >&2
  exit 1
fi
rm -rf .gpu-data
mkdir -p .gpu-data/fashion-mnist
for stem in train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte \
            t10k-labels-idx1-ubyte; do
  if [[ -f $src/$stem.gz ]]; then
    cp "$src/$stem.gz" .gpu-data/fashion-mnist/
  else
    gzip -c "$src/$stem" > ".gpu-data/fashion-mnist/$stem.gz"  # 4x smaller to carry
  fi
done

# What travels: tracked and untracked-not-ignored files plus the carried folders (<= 64 MiB)
tree=$(git ls-files -z --cached --others --exclude-standard | xargs -0 -r du -cb 2>/dev/null \
       | tail -1 | cut -f1)
carried=$(du -cb .whl .gpu-data | tail -1 | cut -f1)
total=$(( tree + carried ))
printf 'wheels: %s files, %s\n' "$count" "$(du -sh .whl | cut -f1)"
printf 'data:   %s (from %s)\n' "$(du -sh .gpu-data | cut -f1)" "$src"
printf 'travels: %d MiB of at most 64\n' $(( total / 1048576 ))
if (( total > 64 * 1048576 )); then
  echo "too large to travel" >&2
  exit 1
fi
