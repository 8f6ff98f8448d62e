"""What only a CUDA GPU can show: RWE there agrees with the CPU, training there resumes bit for
bit, a network trained there exports, and several evaluations share one GPU.

Every test is marked ``cuda``: skipped where torch sees no CUDA device (CI), run by
``benchmarks/gpu.sh`` on a GPU machine.

Stated tolerances, same genome, seed and data (2000/500 Fashion-MNIST images), the CPU in
float32 as the reference:

* backbone features, relative L2 difference: at most 1e-2 with float32 on CUDA (cuDNN may
  compute float32 convolutions in TF32, a 10-bit mantissa) and at most 2e-2 with the bfloat16
  features ``precision="auto"`` picks on a GPU of compute capability >= 8 (bfloat16 against
  float32 features, measured on a CPU over six genomes: 3e-3 to 5e-3);
* RWE error: at most 1 point apart (5 of the 500 validation images; bfloat16 against float32
  on a CPU, same six genomes: at most 0.4 points);
* the linear classifiers alone, trained on the very same features on both devices (float32,
  no TF32 in matrix products by default): weights within 1e-3 relative, predictions agreeing
  on at least 99 % of the images.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import rwenas
from rwenas.build import resolve_architecture
from rwenas.data import make_synthetic
from rwenas.errors import RwenasError
from rwenas.estimators import rwe as rwe_module
from rwenas.estimators.rwe import RWEConfig, ensemble_predict, feature_dtype, train_linear_ensemble
from rwenas.fit.precision import autocast_dtype
from rwenas.fit.recipes import CifarRecipe
from rwenas.models import create_network
from rwenas.spaces import get_space

pytestmark = [pytest.mark.cuda,
              # torch 2.13 deprecates torch.jit, which the TorchScript export still uses
              pytest.mark.filterwarnings("ignore::DeprecationWarning")]

FEATURE_TOL = {"fp32": 1e-2, "auto": 2e-2}
ERROR_TOL = 0.01  # one point

# micro genomes of benchmarks/bench_rwe.py: wide convolutions, pooling/skip, dilated/separable
GENOMES = {
    "conv-wide": "4 0 4 1 3 0 3 1 5 0 5 1 3 0 4 1 6 0 3 1 4 0 4 1 3 0 3 1 5 0 5 1 3 0 4 1 6 0 3 1",
    "pool-skip": "0 0 2 1 1 0 2 2 0 1 2 3 1 0 2 4 0 1 2 5 1 0 2 1 0 0 2 2 1 1 2 3 0 0 2 4 1 1 2 5",
    "dil-sep": "5 0 6 1 3 0 5 2 6 1 4 3 5 4 3 2 6 5 3 0 6 0 5 1 4 2 3 0 6 1 5 3 3 4 6 2 4 5 5 0",
}

TINY = {"channels": 4, "layers": 3}


def rel_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach().double().cpu(), b.detach().double().cpu()
    return float((a - b).norm() / b.norm())


@pytest.fixture(scope="module")
def split():
    from rwenas.data import load_dataset, search_split

    try:
        ds = load_dataset("fashion-mnist")
    except RwenasError as exc:
        pytest.skip(f"Fashion-MNIST not available: {exc}")
    return search_split(ds, seed=0, train_size=2000, val_size=500)


def rwe_with_features(factory, split, config):
    """RWE result plus the raw backbone features it computed (train, val), on the CPU."""
    seen = {}
    original = rwe_module.standardise

    def capture(train, *others):
        seen["features"] = [t.detach().float().cpu() for t in (train, *others)]
        return original(train, *others)

    rwe_module.standardise = capture
    try:
        result = rwe_module.rwe(factory, split, config, seed=0)
    finally:
        rwe_module.standardise = original
    return result, seen["features"]


@pytest.mark.parametrize("name", list(GENOMES))
def test_rwe_on_cuda_matches_cpu(split, name):
    space = get_space("micro")
    genome = space.validate(GENOMES[name])

    def factory():
        return create_network(space, genome, channels=10, layers=5, in_channels=1, num_classes=10)

    ref, ref_f = rwe_with_features(factory, split, RWEConfig(device="cpu", precision="fp32"))
    assert ref.finite
    gpu = torch.device("cuda")
    if torch.cuda.get_device_capability(gpu)[0] >= 8:
        assert feature_dtype("auto", gpu) == torch.bfloat16
    for precision, tol in FEATURE_TOL.items():
        res, feats = rwe_with_features(factory, split, RWEConfig(device="cuda",
                                                                 precision=precision))
        assert res.finite, (precision, res.warning)
        assert res.num_features == ref.num_features
        for part, (a, b) in zip(("train", "val"), zip(feats, ref_f, strict=True), strict=True):
            assert a.shape == b.shape
            assert rel_diff(a, b) <= tol, (precision, part, rel_diff(a, b))
        assert abs(res.error - ref.error) <= ERROR_TOL + 1e-9, (precision, res.error, ref.error)


def test_linear_classifiers_on_cuda_match_cpu():
    g = torch.Generator().manual_seed(0)
    n, f, k = 2000, 64, 10
    labels = torch.randint(0, k, (n,), generator=g)
    centres = torch.randn(k, f, generator=g)
    features = centres[labels] + 2.0 * torch.randn(n, f, generator=g)  # overlapping classes
    train_x, train_y, val_x = features[:1500], labels[:1500], features[1500:]
    config = RWEConfig()
    w_cpu, b_cpu = train_linear_ensemble(train_x, train_y, k, config,
                                         torch.Generator().manual_seed(1))
    w_gpu, b_gpu = train_linear_ensemble(train_x.cuda(), train_y.cuda(), k, config,
                                         torch.Generator().manual_seed(1))
    assert w_gpu.is_cuda
    assert rel_diff(w_gpu, w_cpu) <= 1e-3 and rel_diff(b_gpu, b_cpu) <= 1e-3
    p_cpu = ensemble_predict(w_cpu, b_cpu, val_x)
    p_gpu = ensemble_predict(w_gpu, b_gpu, val_x.cuda()).cpu()
    assert float((p_cpu == p_gpu).float().mean()) >= 0.99
    # not a trivial problem: the classifiers err on some images, and not on most
    assert 0.02 < float((p_cpu != labels[1500:]).float().mean()) < 0.8


# -- training -----------------------------------------------------------------------------------
def tiny_recipe(**changes) -> CifarRecipe:
    # auxiliary head, drop path (CUDA's generator), cutout, crop and flip all take part
    return CifarRecipe(epochs=3, batch_size=32, cutout=6, **TINY).replace(**changes)


def tiny_data():
    return make_synthetic(160, 60, image_size=12, num_classes=4, seed=3)


def strip_seconds(history):
    return [{k: v for k, v in row.items() if k != "seconds"} for row in history]


def test_training_on_cuda_resumes_bit_for_bit(tmp_path):
    from rwenas.fit.checkpoint import load_checkpoint
    from rwenas.train.run import train

    arch = resolve_architecture("micro", arch="DARTS")
    data = tiny_data()
    straight = train(arch, tiny_recipe(), data=data, out_dir=tmp_path / "a", seed=5,
                     device="cuda")
    assert straight.completed and straight.result["device"].startswith("cuda")
    assert all(p.is_cuda for p in straight.network.parameters())
    if torch.cuda.get_device_capability()[0] >= 8:
        assert autocast_dtype("auto", torch.device("cuda")) == torch.bfloat16
    losses = [row["train_loss"] for row in straight.history]
    assert all(0 < v < 10 for v in losses)

    # the first epoch in another process (its own cuDNN state, CUDA context and generators)
    code = (
        "from rwenas.build import resolve_architecture\n"
        "from rwenas.data import make_synthetic\n"
        "from rwenas.train.run import train\n"
        "from rwenas.fit.recipes import CifarRecipe\n"
        f"r = CifarRecipe(epochs=3, batch_size=32, cutout=6, **{TINY!r})\n"
        "d = make_synthetic(160, 60, image_size=12, num_classes=4, seed=3)\n"
        "train(resolve_architecture('micro', arch='DARTS'), r, data=d,"
        f" out_dir={str(tmp_path / 'b')!r}, seed=5, device='cuda', stop_after=1)\n"
    )
    src = str(Path(rwenas.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        p for p in (src, os.environ.get("PYTHONPATH", "")) if p)}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert load_checkpoint(tmp_path / "b")["epoch"] == 1

    def interrupt(row):
        if row["epoch"] == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(arch, tiny_recipe(), data=data, out_dir=tmp_path / "b", seed=5, device="cuda",
              resume=True, on_epoch_end=interrupt)
    resumed = train(arch, tiny_recipe(), data=data, out_dir=tmp_path / "b", seed=5,
                    device="cuda", resume=True)
    assert resumed.completed

    a, b = straight.network.state_dict(), resumed.network.state_dict()
    assert a.keys() == b.keys()
    differing = [k for k in a if not torch.equal(a[k], b[k])]
    assert not differing, differing[:5]
    assert strip_seconds(straight.history) == strip_seconds(resumed.history)
    assert straight.result["test_error"] == resumed.result["test_error"]
    ca, cb = load_checkpoint(tmp_path / "a"), load_checkpoint(tmp_path / "b")
    assert torch.equal(ca["rng"]["cuda"][0], cb["rng"]["cuda"][0])


def test_export_of_a_cuda_trained_network(tmp_path):
    from rwenas.train.export import export
    from rwenas.train.run import train

    arch = resolve_architecture("micro", arch="DARTS")
    out = tmp_path / "run"
    res = train(arch, tiny_recipe(epochs=1), data=tiny_data(), out_dir=out, device="cuda")
    assert res.result["device"].startswith("cuda")
    exported = export(out, tmp_path / "exp", onnx=False)
    assert exported.max_abs_diff["torchscript"] <= 1e-4

    # the exported model (CPU, float32) computes what the network trained on the GPU computes
    net = res.network.eval()
    net.drop_path_prob = 0.0
    x = torch.randn(8, 1, 12, 12, generator=torch.Generator().manual_seed(0))
    scripted = torch.jit.load(str(exported.torchscript), map_location="cpu")
    with torch.no_grad():
        on_gpu = net(x.cuda().contiguous(memory_format=torch.channels_last))
        on_gpu = on_gpu[0] if isinstance(on_gpu, tuple) else on_gpu
        on_cpu = scripted(x)
    assert on_cpu.shape == (8, 4)
    assert rel_diff(on_gpu, on_cpu) <= 1e-2
    # and it runs on the GPU too
    scripted_gpu = torch.jit.load(str(exported.torchscript), map_location="cuda")
    with torch.no_grad():
        assert rel_diff(scripted_gpu(x.cuda()), on_cpu) <= 1e-2


# -- evaluations sharing the GPU ------------------------------------------------------------------
def eval_context():
    from rwenas.search.executors import EvalContext

    # device "cuda", not "auto": a worker that cannot reach the GPU fails instead of quietly
    # running on its CPU
    return EvalContext(space="micro", dataset="synthetic", train_size=800, val_size=200,
                       seed=0, rwe={"device": "cuda", "epochs": 5})


def sample_genomes(count: int) -> list[tuple[int, ...]]:
    import numpy as np

    space = get_space("micro")
    rng = np.random.default_rng(0)
    return [tuple(int(v) for v in space.sample(rng)) for _ in range(count)]


def errors_by_genome(executor, genomes):
    out = {}
    try:
        for genome, outcome in executor.run(genomes):
            assert isinstance(outcome, dict), outcome
            out[genome] = outcome["rwe_error"]
    finally:
        executor.close()
    return out


def test_process_workers_share_the_gpu():
    from rwenas.search.executors import LocalExecutor, ProcessExecutor

    genomes = sample_genomes(4)
    local = errors_by_genome(LocalExecutor(eval_context()), genomes)
    shared = errors_by_genome(ProcessExecutor(eval_context(), workers=2, threads=1), genomes)
    assert shared.keys() == local.keys() == set(genomes)
    for g in genomes:  # the same evaluation in another process on the same GPU
        assert abs(shared[g] - local[g]) <= 1 / 200 + 1e-9


def test_ray_gpus_per_eval():
    pytest.importorskip("ray")
    from rwenas.search.executors import RayExecutor

    genomes = sample_genomes(4)
    executor = RayExecutor(eval_context(), workers=4, gpus_per_eval=0.25)
    errors = errors_by_genome(executor, genomes)
    assert errors.keys() == set(genomes)
    assert all(0.0 <= e <= 1.0 for e in errors.values())
