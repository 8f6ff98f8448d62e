"""Model complexity: parameters and multiply-adds, in millions.

Multiply-adds come from PyTorch's own FLOP counter (``torch.utils.flop_counter``), which counts
2 FLOPs per multiply-accumulate of convolutions and matrix products; MAdds = FLOPs / 2. Like
the NAS literature, pooling, BatchNorm and additions are not counted, and the auxiliary head
is excluded (it only runs in training).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


@dataclass(frozen=True)
class Complexity:
    params_m: float
    madds_m: float


def count_params(model: nn.Module) -> int:
    """Parameters of the model, excluding any ``auxiliary_head`` submodule."""
    return sum(p.numel() for name, p in model.named_parameters()
               if not name.startswith("auxiliary_head.") and ".auxiliary_head." not in name)


@torch.no_grad()
def count_madds(model: nn.Module, input_shape: tuple[int, int, int]) -> int:
    """Multiply-adds of one forward pass of a single ``C×H×W`` image, in eval mode."""
    was_training = model.training
    model.eval()
    try:
        param = next(model.parameters(), None)
        device = param.device if param is not None else torch.device("cpu")
        x = torch.zeros(1, *input_shape, device=device)
        with FlopCounterMode(display=False) as counter:
            model(x)
        return counter.get_total_flops() // 2
    finally:
        model.train(was_training)


def complexity(model: nn.Module, input_shape: tuple[int, int, int]) -> Complexity:
    """Parameters (M) and multiply-adds (M) of ``model`` at ``input_shape`` (C, H, W)."""
    return Complexity(count_params(model) / 1e6, count_madds(model, input_shape) / 1e6)


@torch.inference_mode()
def latency_ms(model: nn.Module, input_shape: tuple[int, int, int], *, batch: int = 1,
               warmup: int = 3, repeats: int = 15, threads: int | None = 1) -> float:
    """Median wall-clock milliseconds of one eval-mode forward pass of ``batch`` images on the
    model's device, after ``warmup`` passes. ``threads`` pins torch's CPU threads during the
    measurement (default 1, so parallel evaluations do not disturb each other's timings)."""
    import statistics
    import time

    was_training = model.training
    model.eval()
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    x = torch.randn(batch, *input_shape, device=device)
    saved = torch.get_num_threads()
    if threads and device.type == "cpu":
        torch.set_num_threads(threads)
    try:
        times = []
        for i in range(warmup + repeats):
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            model(x)
            if device.type == "cuda":
                torch.cuda.synchronize()
            if i >= warmup:
                times.append((time.perf_counter() - t0) * 1000)
        return statistics.median(times)
    finally:
        torch.set_num_threads(saved)
        model.train(was_training)


def onnx_latency_ms(model: nn.Module, input_shape: tuple[int, int, int], *, warmup: int = 3,
                    repeats: int = 15, threads: int = 1) -> float:
    """Median milliseconds of one batch-1 inference of the eval-mode ``model`` exported to
    ONNX (opset 17) and run by ONNX Runtime's CPU provider on ``threads`` threads, after
    ``warmup`` runs: the latency of the model as it is usually deployed. Needs the ``onnx``
    and ``onnxruntime`` packages (``pip install 'rwenas[onnx]'``)."""
    import io
    import statistics
    import time
    import warnings

    try:
        import onnxruntime
    except ImportError:
        from rwenas.errors import ConfigError

        raise ConfigError("latency_onnx needs onnx and onnxruntime: "
                          "pip install 'rwenas[onnx]'") from None
    was_training = model.training
    model.eval()
    x = torch.randn(1, *input_shape)
    buf = io.BytesIO()
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # tracer chatter, not for the user
            torch.onnx.export(model, (x,), buf, dynamo=False, input_names=["images"],
                              output_names=["logits"], opset_version=17)
    finally:
        model.train(was_training)
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    session = onnxruntime.InferenceSession(buf.getvalue(), options,
                                           providers=["CPUExecutionProvider"])
    feed = {"images": x.numpy()}
    times = []
    for i in range(warmup + repeats):
        t0 = time.perf_counter()
        session.run(None, feed)
        if i >= warmup:
            times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


@torch.inference_mode()
def peak_activation_mb(model: nn.Module, input_shape: tuple[int, int, int],
                       batch: int = 1) -> float:
    """Peak memory held by live activations (MB) during one eval-mode forward pass.

    Every tensor produced by an operation is tracked from creation until it is freed (the
    input included, parameters not), so the peak reflects what the forward pass really keeps
    alive — e.g. all the states of a cell until its concatenation.
    """
    import weakref

    from torch.utils._python_dispatch import TorchDispatchMode

    live = {"now": 0, "peak": 0}
    seen: set[int] = set()

    def track(t: torch.Tensor) -> None:
        storage = t.untyped_storage()
        sid = storage.data_ptr()
        if sid in seen or storage.nbytes() == 0:
            return
        seen.add(sid)
        size = storage.nbytes()
        live["now"] += size
        live["peak"] = max(live["peak"], live["now"])

        def release(sid: int = sid, size: int = size) -> None:
            seen.discard(sid)
            live["now"] -= size

        weakref.finalize(storage, release)

    class Tracker(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            for t in out if isinstance(out, (tuple, list)) else (out,):
                if isinstance(t, torch.Tensor):
                    track(t)
            return out

    was_training = model.training
    model.eval()
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    try:
        x = torch.randn(batch, *input_shape, device=device)
        track(x)
        with Tracker():
            model(x)
        return live["peak"] / 2**20
    finally:
        model.train(was_training)
