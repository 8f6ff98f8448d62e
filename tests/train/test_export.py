"""`rwenas export`: TorchScript (and ONNX where installed) round trips, genotype JSON."""

from __future__ import annotations

import importlib.util
import json

import pytest
import torch

from rwenas.build import resolve_architecture
from rwenas.data import make_synthetic
from rwenas.fit.recipes import CifarRecipe
from rwenas.train import export as export_module
from rwenas.train.export import ExportError, export, load_trained
from rwenas.train.run import train

# torch 2.13 deprecates torch.jit; the export still uses it (TorchScript is the format asked for)
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("trained") / "run"
    data = make_synthetic(96, 32, image_size=12, num_classes=4, seed=1)
    train(resolve_architecture("micro", arch="DARTS"),
          CifarRecipe(epochs=1, batch_size=32, channels=4, layers=3), data=data, out_dir=out)
    return out


@pytest.fixture(scope="module")
def trained_macro(tmp_path_factory):
    out = tmp_path_factory.mktemp("trained") / "macro"
    data = make_synthetic(64, 16, image_size=12, num_classes=3, in_channels=3, seed=2)
    train(resolve_architecture("macro", arch="NSGANet"),
          CifarRecipe(epochs=1, batch_size=32, channels=4), data=data, out_dir=out)
    return out


def test_torchscript_round_trip(trained, tmp_path):
    res = export(trained, tmp_path / "exp", onnx=False)
    assert res.max_abs_diff["torchscript"] <= 1e-4
    assert res.onnx is None and any("ONNX skipped" in n for n in res.notes)
    net, arch, _ = load_trained(trained)
    net.eval()
    scripted = torch.jit.load(str(res.torchscript))
    for batch in (1, 7):  # other batch sizes than the traced one
        x = torch.randn(batch, 1, 12, 12)
        with torch.no_grad():
            assert torch.allclose(scripted(x), net(x), atol=1e-5)
    # the exported model has no auxiliary head and does not need rwenas' classes
    assert not any("auxiliary_head" in k for k in scripted.state_dict())
    genotype = json.loads(res.genotype.read_text())
    assert genotype["space"] == "micro" and genotype["label"] == "DARTS"
    again = resolve_architecture("micro", genotype_file=res.genotype)
    assert again.genotype == arch.genotype
    summary = json.loads(res.summary.read_text())
    assert summary["input_shape"] == [None, 1, 12, 12] and summary["epoch"] == 1


def test_default_output_dir_and_macro(trained_macro):
    res = export(trained_macro / "checkpoint.pt", onnx=False)
    assert res.out_dir == trained_macro / "export"
    assert res.torchscript.is_file() and res.max_abs_diff["torchscript"] <= 1e-4


def test_mismatch_beyond_tolerance_fails(trained, tmp_path):
    with pytest.raises(ExportError, match="differ"):
        export(trained, tmp_path / "exp", onnx=False, atol=-1.0)


def test_onnx_requested_without_the_package(trained, tmp_path, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(export_module.importlib.util, "find_spec",
                        lambda name, *a: None if name == "onnx" else real(name, *a))
    with pytest.raises(ExportError, match=r"rwenas\[onnx\]"):
        export(trained, tmp_path / "exp", onnx=True)
    res = export(trained, tmp_path / "exp2")  # auto: skipped with a note
    assert res.onnx is None and "not installed" in " ".join(res.notes)


def test_onnx_round_trip(trained, tmp_path):
    pytest.importorskip("onnx")
    res = export(trained, tmp_path / "exp", onnx=True)
    assert res.onnx is not None and res.onnx.is_file()
    if importlib.util.find_spec("onnxruntime") is None:
        assert res.max_abs_diff["onnx"] is None
        return
    assert res.max_abs_diff["onnx"] <= 1e-4
    import onnxruntime

    net, _, _ = load_trained(trained)
    session = onnxruntime.InferenceSession(str(res.onnx), providers=["CPUExecutionProvider"])
    x = torch.randn(5, 1, 12, 12)  # dynamic batch dimension
    out = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    with torch.no_grad():
        assert torch.allclose(torch.from_numpy(out), net(x), atol=1e-4)


def test_cli_export(trained, tmp_path, run_cli):
    rc, o, e = run_cli("export", str(trained), "--out", str(tmp_path / "cli"), "--no-onnx")
    assert rc == 0, e
    assert "torchscript:" in o and "max |diff|" in o and "genotype:" in o
    assert (tmp_path / "cli" / "model.torchscript.pt").is_file()
    rc, o, e = run_cli("export", str(trained), "--out", str(tmp_path / "cli"), "--atol", "-1")
    assert rc == 2
