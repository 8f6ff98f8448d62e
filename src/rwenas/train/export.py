"""Export a trained network: TorchScript, ONNX (with the ``onnx`` extra) and its genotype.

:func:`export` rebuilds the network from a training checkpoint (or output directory), loads
the trained weights, drops the auxiliary head (it only serves training) and writes

* ``model.torchscript.pt`` — ``torch.jit.trace`` of the eval-mode ``forward`` (images →
  logits) at the training image size; loads with ``torch.jit.load`` and no rwenas;
* ``model.onnx`` — ``torch.onnx.export`` (opset 17, batch dimension dynamic), when the
  ``onnx`` package is installed (``pip install 'rwenas[onnx]'``);
* ``genotype.json`` — the architecture (valid input of ``--genotype``);
* ``export.json`` — what was written and the check results.

Each exported model is loaded back and run on a random batch next to the original network;
the largest absolute difference of the logits is reported, and above ``atol`` (default 1e-4)
the export fails with :class:`ExportError`. ONNX outputs are compared with ``onnxruntime``
when it is installed (else only ``onnx.checker`` validates the file).
"""

from __future__ import annotations

import importlib.util
import io
import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from rwenas.errors import ConfigError, RwenasError
from rwenas.fit.checkpoint import (
    CheckpointError,
    atomic_write_bytes,
    atomic_write_text,
    load_checkpoint,
)

__all__ = ["ExportError", "ExportResult", "export", "export_from_run", "load_trained"]

ONNX_HINT = "pip install 'rwenas[onnx]' (onnx and onnxruntime)"


class ExportError(RwenasError):
    """An export failed or its outputs differ from the original network's."""


@dataclass
class ExportResult:
    out_dir: Path
    torchscript: Path
    genotype: Path
    summary: Path
    onnx: Path | None = None
    #: Largest absolute logit difference to the original network, per format (``None``: not
    #: compared).
    max_abs_diff: dict[str, float | None] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def load_trained(source: str | Path, *, space: str | None = None,
                 trust_plugins: bool = False) -> tuple[torch.nn.Module, Any, dict[str, Any]]:
    """(network in eval mode with the trained weights, its architecture, the checkpoint).

    A plugin space named by the checkpoint is imported only if ``space`` names it too or
    ``trust_plugins`` (:func:`rwenas.spaces.check_stored_space`)."""
    from rwenas.spaces import check_stored_space
    from rwenas.train.run import network_from_run

    ckpt = load_checkpoint(source)
    arch = ckpt["run"].get("architecture")
    check_stored_space(arch.get("space") if isinstance(arch, dict) else None, given=space,
                       trust=trust_plugins, where=f"the checkpoint {ckpt['path']}")
    net, arch = network_from_run(ckpt["run"])
    try:
        net.load_state_dict(ckpt["model"])
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else ""
        raise CheckpointError(f"checkpoint {ckpt['path']} does not fit the network of its "
                              f"run ({first})") from None
    net.eval()
    return net, arch, ckpt


def _input_shape(run: dict[str, Any]) -> tuple[int, int, int]:
    data = run.get("data") or {}
    recipe = run.get("recipe") or {}
    try:
        channels = int(data["in_channels"])
        size = int(recipe.get("image_size") or data["image_size"])
    except (KeyError, TypeError, ValueError):
        raise CheckpointError("the checkpoint's run description lacks the input shape") from None
    return channels, size, size


def _max_diff(a: Any, b: torch.Tensor) -> float:
    a = torch.as_tensor(a)
    if a.shape != b.shape:
        raise ExportError(f"exported model returns shape {tuple(a.shape)}, the original "
                          f"{tuple(b.shape)}")
    return float((a.float() - b.float()).abs().max())


def _export_onnx(net: torch.nn.Module, x: torch.Tensor, path: Path) -> None:
    kwargs = {"input_names": ["images"], "output_names": ["logits"], "opset_version": 17}
    buf = io.BytesIO()
    try:
        torch.onnx.export(net, (x,), buf, dynamo=False,
                          dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}},
                          **kwargs)
    except Exception:  # the TorchScript-based exporter is gone: use torch.export's
        buf = io.BytesIO()
        try:
            program = torch.onnx.export(
                net, (x,), dynamo=True, dynamic_shapes=({0: torch.export.Dim("batch")},),
                **kwargs)
            program.save(str(path))
            return
        except Exception as exc:
            first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
            raise ExportError(f"ONNX export failed ({type(exc).__name__}: {first})") from None
    atomic_write_bytes(path, buf.getvalue())


def _check_batch(batch_size: Any) -> None:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch size must be a positive integer, got {batch_size!r}")


def _make_out(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create output directory {out}: {exc.strerror}") from None


def export(source: str | Path, out_dir: str | Path | None = None, *, onnx: bool | None = None,
           batch_size: int = 4, seed: int = 0, atol: float = 1e-4, space: str | None = None,
           trust_plugins: bool = False) -> ExportResult:
    """Export the network of a training checkpoint (file, or a ``rwenas train`` output
    directory). ``out_dir`` defaults to ``export/`` next to the checkpoint. ``onnx``: ``True``
    requires the onnx package, ``False`` skips ONNX, ``None`` exports it when installed.
    ``space``/``trust_plugins``: see :func:`load_trained`."""
    _check_batch(batch_size)
    if onnx and importlib.util.find_spec("onnx") is None:
        raise ExportError(f"ONNX export needs the onnx package: {ONNX_HINT}")
    net, arch, ckpt = load_trained(source, space=space, trust_plugins=trust_plugins)
    ckpt_path = Path(ckpt["path"])
    out = Path(out_dir) if out_dir is not None else ckpt_path.parent / "export"
    _make_out(out)
    return _write_exports(net, arch, _input_shape(ckpt["run"]), out, onnx=onnx,
                          batch_size=batch_size, seed=seed, atol=atol,
                          network=ckpt["run"].get("network"),
                          summary={"checkpoint": str(ckpt_path), "epoch": ckpt["epoch"],
                                   "epochs": ckpt.get("epochs")})


def export_from_run(run_dir: str | Path, pick: str, out_dir: str | Path | None = None, *,
                    onnx: bool | None = None, batch_size: int = 4, seed: int = 0,
                    atol: float = 1e-4, space: str | None = None,
                    trust_plugins: bool = False) -> ExportResult:
    """Export the architecture ``pick`` selects from a search run's front (L, M, S, knee, a
    budget like ``madds<=10``, or a row): the network exactly as the search evaluated it (the
    search setting, random weights seeded by the run seed and its canonical key), so that it
    can be measured where it will run, and its genotype. ``out_dir`` defaults to
    ``RUN_DIR/export-PICK/``. A plugin space named by the run is imported only if ``space``
    names it too or ``trust_plugins`` (:func:`rwenas.spaces.check_stored_space`)."""
    from rwenas.build import build_network
    from rwenas.checks import MAX_IMAGE_SIZE, MAX_SEED, check_number, check_text
    from rwenas.data import dataset_info
    from rwenas.evaluation import derive_seed
    from rwenas.search.config import validate_network
    from rwenas.spaces import canonical_genome
    from rwenas.train.pick import pick_from_run

    _check_batch(batch_size)
    if onnx and importlib.util.find_spec("onnx") is None:
        raise ExportError(f"ONNX export needs the onnx package: {ONNX_HINT}")
    picked = pick_from_run(run_dir, pick, space=space, trust_plugins=trust_plugins)
    arch, config = picked.architecture, picked.config
    if arch.genome is None:
        raise ConfigError(f"front.json row {picked.index} of {run_dir} has no genome")
    # config.json may come from anyone: its settings are checked as a search's are
    where = f"{picked.run_dir / 'config.json'}:"
    dataset = check_text(f"{where} dataset", config.get("dataset", "fashion-mnist"))
    image_size = check_number(f"{where} image_size", config.get("image_size"), integer=True,
                              low=1, high=MAX_IMAGE_SIZE, optional=True)
    run_seed = check_number(f"{where} seed", config.get("seed", 0), integer=True, low=0,
                            high=MAX_SEED)
    info = dataset_info(dataset, image_size=image_size)
    network = {k: tuple(v) if isinstance(v, list) else v
               for k, v in validate_network(config.get("network") or {}).items()}
    key = arch.space.key(arch.genome)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(int(run_seed), key))
        net = build_network(arch.space, canonical_genome(arch.space, arch.genome),
                            in_channels=info.in_channels, num_classes=info.num_classes,
                            setting="search", **network)
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in picked.pick)
    out = Path(out_dir) if out_dir is not None else picked.run_dir / f"export-{safe}"
    _make_out(out)
    return _write_exports(net, arch, (info.in_channels, info.image_size, info.image_size), out,
                          onnx=onnx, batch_size=batch_size, seed=seed, atol=atol,
                          network={"setting": "search", **network},
                          summary={"search_run": str(picked.run_dir), "pick": picked.pick,
                                   "front_index": picked.index, "weights": "random (as "
                                   "evaluated by the search)"})


def _write_exports(net: torch.nn.Module, arch: Any, shape: tuple[int, int, int], out: Path, *,
                   onnx: bool | None, batch_size: int, seed: int, atol: float,
                   network: Any, summary: dict[str, Any]) -> ExportResult:
    """Write and check TorchScript (+ ONNX) of ``net`` and the genotype into ``out``."""
    have_onnx = importlib.util.find_spec("onnx") is not None
    # The auxiliary head only serves training; the exported forward is images → logits.
    if getattr(net, "auxiliary_head", None) is not None:
        net.auxiliary_head = None
    if hasattr(net, "drop_path_prob"):
        net.drop_path_prob = 0.0
    net.eval()
    x = torch.randn(batch_size, *shape, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        reference = net(x)

    result = ExportResult(out, out / "model.torchscript.pt", out / "genotype.json",
                          out / "export.json")
    with warnings.catch_warnings():  # tracer and deprecation chatter, not for the user
        warnings.simplefilter("ignore")
        with torch.no_grad():
            traced = torch.jit.trace(net, x, check_trace=False)
        buf = io.BytesIO()
        torch.jit.save(traced, buf)
        atomic_write_bytes(result.torchscript, buf.getvalue())
        loaded = torch.jit.load(str(result.torchscript), map_location="cpu")
        with torch.no_grad():
            diff = _max_diff(loaded(x), reference)
    result.max_abs_diff["torchscript"] = diff
    if not diff <= atol:
        raise ExportError(f"TorchScript outputs differ from the network's by {diff:.3g} "
                          f"(> {atol:g})")

    if onnx is False:
        result.notes.append("ONNX skipped (--no-onnx)")
    elif not have_onnx:
        result.notes.append(f"ONNX skipped: the onnx package is not installed; {ONNX_HINT}")
    else:
        result.onnx = out / "model.onnx"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _export_onnx(net, x, result.onnx)
        import onnx as onnx_pkg

        try:
            onnx_pkg.checker.check_model(str(result.onnx))
        except Exception as exc:
            raise ExportError(f"the exported ONNX model is invalid: {exc}") from None
        if importlib.util.find_spec("onnxruntime") is None:
            result.max_abs_diff["onnx"] = None
            result.notes.append("ONNX outputs not compared (onnxruntime is not installed)")
        else:
            import onnxruntime

            session = onnxruntime.InferenceSession(str(result.onnx),
                                                   providers=["CPUExecutionProvider"])
            outputs = session.run(None, {session.get_inputs()[0].name: x.numpy()})
            odiff = _max_diff(outputs[0], reference)
            result.max_abs_diff["onnx"] = odiff
            if not odiff <= atol:
                raise ExportError(f"ONNX outputs differ from the network's by {odiff:.3g} "
                                  f"(> {atol:g})")

    genotype = {**arch.to_json(),
                "key": arch.space.key(arch.genome) if arch.genome is not None else None,
                "network": network}
    atomic_write_text(result.genotype, json.dumps(genotype, indent=2) + "\n")
    summary = {
        **summary,
        "input_shape": [None, *shape],
        "torchscript": result.torchscript.name,
        "onnx": result.onnx.name if result.onnx else None,
        "genotype": result.genotype.name,
        "check_batch": batch_size,
        "atol": atol,
        "max_abs_diff": result.max_abs_diff,
        "notes": result.notes,
    }
    atomic_write_text(result.summary, json.dumps(summary, indent=2) + "\n")
    return result
