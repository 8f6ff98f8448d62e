"""`rwenas train`: the loop on tiny synthetic data — exact resume, schedules inside the loop,
output-directory protection, corrupt checkpoints, picking from a search run, the CLI."""

from __future__ import annotations

import csv
import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from rwenas.build import resolve_architecture
from rwenas.data import make_synthetic
from rwenas.errors import ConfigError
from rwenas.fit.checkpoint import CheckpointError, load_checkpoint
from rwenas.fit.loop import fit
from rwenas.fit.recipes import CifarRecipe
from rwenas.fit.schedules import drop_path_prob, lr_at
from rwenas.spaces import MicroSpace, format_genome
from rwenas.train.pick import pick_from_run, pick_index
from rwenas.train.run import network_from_run, read_run, train

TINY = {"channels": 4, "layers": 3}


@pytest.fixture(scope="module")
def data():
    return make_synthetic(160, 60, image_size=12, num_classes=4, seed=3)


@pytest.fixture(scope="module")
def arch():
    return resolve_architecture("micro", arch="DARTS")


def recipe(**changes) -> CifarRecipe:
    return CifarRecipe(epochs=3, batch_size=32, cutout=6, **TINY).replace(**changes)


def assert_one_line_error(rc: int, out: str, err: str, *fragments: str) -> str:
    assert rc == 2, (rc, out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("rwenas: error:")
    assert "Traceback" not in err + out
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def strip_seconds(history):
    return [{k: v for k, v in row.items() if k != "seconds"} for row in history]


# -- resume ----------------------------------------------------------------------------------
def test_resume_continues_bit_for_bit(tmp_path, data, arch):
    straight = train(arch, recipe(), data=data, out_dir=tmp_path / "a", seed=5)
    assert straight.completed and straight.epochs_done == 3

    first = train(arch, recipe(), data=data, out_dir=tmp_path / "b", seed=5, stop_after=1)
    assert not first.completed and first.epochs_done == 1 and first.result is None
    assert not (tmp_path / "b" / "result.json").exists()
    ckpt = load_checkpoint(tmp_path / "b")
    assert ckpt["epoch"] == 1

    # an interruption raised from the epoch callback (like Ctrl-C) keeps the checkpoint
    def interrupt(row):
        if row["epoch"] == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(arch, recipe(), data=data, out_dir=tmp_path / "b", seed=5, resume=True,
              on_epoch_end=interrupt)
    assert load_checkpoint(tmp_path / "b")["epoch"] == 2
    resumed = train(arch, recipe(), data=data, out_dir=tmp_path / "b", seed=5, resume=True)
    assert resumed.completed

    a, b = straight.network.state_dict(), resumed.network.state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert strip_seconds(straight.history) == strip_seconds(resumed.history)
    ca, cb = load_checkpoint(tmp_path / "a"), load_checkpoint(tmp_path / "b")
    for key, state in ca["optimizer"]["state"].items():
        assert torch.equal(state["momentum_buffer"], cb["optimizer"]["state"][key][
            "momentum_buffer"])
    assert torch.equal(ca["rng"]["generator"], cb["rng"]["generator"])
    assert torch.equal(ca["rng"]["torch"], cb["rng"]["torch"])
    ra = json.loads((tmp_path / "a" / "result.json").read_text())
    rb = json.loads((tmp_path / "b" / "result.json").read_text())
    assert ra["test_error"] == rb["test_error"]
    assert ra["params_m"] == rb["params_m"] and ra["madds_m"] == rb["madds_m"]

    # a finished run resumed again does nothing more
    again = train(arch, recipe(), data=data, out_dir=tmp_path / "b", seed=5, resume=True)
    assert again.epochs_done == 3 and strip_seconds(again.history) == strip_seconds(
        straight.history)


def test_outputs_schedules_and_drop_path_inside_the_loop(tmp_path, data, arch):
    res = train(arch, recipe(epochs=4, drop_path=0.3), data=data, out_dir=tmp_path / "r")
    out = tmp_path / "r"
    assert {p.name for p in out.iterdir()} >= {"config.json", "checkpoint.pt", "metrics.csv",
                                              "curve.png", "result.json"}
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temp files left
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4]
    assert list(rows[0]) == ["epoch", "lr", "drop_path", "train_loss", "train_acc",
                             "test_loss", "test_acc", "seconds"]
    for e, row in enumerate(res.history):
        assert row["lr"] == pytest.approx(lr_at("cosine", 0.025, e, 4))
        assert row["drop_path"] == pytest.approx(drop_path_prob(0.3, e, 4))
    # the learning rate is set per step: the last step of the last epoch
    steps = 160 // 32
    ckpt = load_checkpoint(out)
    assert ckpt["optimizer"]["param_groups"][0]["lr"] == pytest.approx(
        lr_at("cosine", 0.025, 3 + (steps - 1) / steps, 4))
    result = json.loads((out / "result.json").read_text())
    assert result["test_error"] == pytest.approx(1 - res.history[-1]["test_acc"])
    assert result["epochs"] == 4 and result["seconds"] > 0
    assert result["params_m"] > 0 and result["madds_m"] > 0
    assert result["architecture"]["label"] == "DARTS"
    assert result["architecture"]["genotype"]["normal"]
    assert result["recipe"]["drop_path"] == 0.3 and result["recipe"]["lr"] == 0.025
    assert result["network"]["channels"] == 4 and result["network"]["auxiliary"] is True
    assert "test_top5_error" not in result
    assert (out / "curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_network_drop_path_prob_is_set_each_epoch(data, arch):
    from rwenas.fit.loop import TrainData
    from rwenas.train.run import build_for_recipe

    td = TrainData.from_dataset(data)
    r = recipe(epochs=4, drop_path=0.2)
    net, _ = build_for_recipe(arch, r, in_channels=1, num_classes=4)
    probs = []
    fit(net, td, r, on_epoch_end=lambda row: probs.append(net.drop_path_prob))
    assert probs == pytest.approx([0.0, 0.05, 0.1, 0.15])


def test_training_runs_average_pools_as_convolutions_and_restores_them(data):
    """On a CPU the loop trains (and tests) with the average pools computed as convolutions
    (:func:`rwenas.models.ops.conv_avg_pools`); the network it returns is the plain one."""
    from rwenas.fit.loop import TrainData
    from rwenas.models.ops import ConvAvgPool3x3
    from rwenas.train.run import build_for_recipe

    pools = "1 0 1 1 1 0 3 1 1 2 4 0 1 3 0 4 1 5 0 1"  # avg_pool_3x3 is op 1
    arch = resolve_architecture("micro", genome=f"{pools} {pools}")
    r = recipe(epochs=1)
    net, _ = build_for_recipe(arch, r, in_channels=1, num_classes=4)
    avg = [m for m in net.modules() if isinstance(m, nn.AvgPool2d)]
    steps: list[bool] = []  # per training call (gradients on): computed as a convolution?

    def hook(mod, args, out) -> None:
        if torch.is_grad_enabled():  # not the MAdds count before training
            steps.append(isinstance(getattr(vars(mod).get("forward"), "__self__", None),
                                    ConvAvgPool3x3))

    for m in avg:
        m.register_forward_hook(hook)
    fit(net, TrainData.from_dataset(data), r)
    assert len(avg) >= 6 and len(steps) == len(avg) * (160 // 32) and all(steps)
    assert not any("forward" in vars(m) for m in avg)


def test_label_smoothing_and_no_auxiliary_head(data, arch, monkeypatch):
    """Every training step's loss is cross-entropy against smoothed targets: 0.9 on the true
    class plus 0.1 / K on every class (checked by hand on the logits the loop produced)."""
    import rwenas.fit.loop as loop

    calls: list[tuple[torch.Tensor, torch.Tensor, float, torch.Tensor]] = []
    real = loop.classification_loss

    def spy(logits, targets, label_smoothing=0.0):
        loss = real(logits, targets, label_smoothing)
        calls.append((logits.detach().float(), targets, label_smoothing, loss.detach()))
        return loss

    monkeypatch.setattr(loop, "classification_loss", spy)
    res = train(arch, recipe(epochs=1, label_smoothing=0.1, auxiliary_weight=0.0,
                             grad_clip=0.0, cutout=0), data=data)
    assert res.network.auxiliary_head is None and res.completed
    assert len(calls) == 160 // 32  # one per step; no auxiliary loss
    for logits, y, eps, loss in calls:
        assert eps == 0.1
        logp = torch.log_softmax(logits, 1)
        nll = -logp.gather(1, y[:, None]).mean()
        by_hand = (1 - eps) * nll + eps * (-logp.mean(1)).mean()
        assert float(loss) == pytest.approx(float(by_hand), rel=1e-5)


def test_macro_networks_train_too(data):
    macro = resolve_architecture("macro", arch="NSGANet")
    res = train(macro, CifarRecipe(epochs=1, batch_size=32, channels=(4, 4, 4)), data=data)
    assert res.completed and res.result["network"]["channels"] == [4, 4, 4]
    # trained as NSGA-Net trains its macro networks: dense decoder, unpadded first conv
    assert res.result["network"]["decoder"] == "dense"
    assert res.result["network"]["pad_first"] is False
    res = train(macro, CifarRecipe(epochs=1, batch_size=32, channels=4, decoder="residual"),
                data=data)
    assert res.network.decoder == "residual" and res.result["network"]["decoder"] == "residual"
    with pytest.raises(ConfigError, match="macro"):
        train(macro, CifarRecipe(epochs=1, layers=3), data=data)
    with pytest.raises(ConfigError, match="macro"):
        train(resolve_architecture("micro", arch="DARTS"),
              CifarRecipe(epochs=1, decoder="dense"), data=data)


def test_macro_runs_recorded_before_the_decoder_option_rebuild_as_trained():
    """A run description without ``decoder``/``pad_first`` was trained with the residual
    decoder and a padded first convolution: it rebuilds exactly that network."""
    macro = resolve_architecture("macro", arch="NSGANet")
    run = {"architecture": macro.to_json(),
           "network": {"setting": "validation", "channels": [4, 4, 4], "in_channels": 3,
                       "num_classes": 10}}
    net, _ = network_from_run(run)
    assert net.decoder == "residual"
    assert net.body[0].entry.padding == (1, 1)


# -- output directory --------------------------------------------------------------------------
def test_existing_run_is_never_overwritten(tmp_path, data, arch):
    out = tmp_path / "run"
    train(arch, recipe(epochs=1), data=data, out_dir=out)
    before = (out / "checkpoint.pt").read_bytes()
    with pytest.raises(ConfigError, match=r"--resume.*--force"):
        train(arch, recipe(epochs=1), data=data, out_dir=out)
    assert (out / "checkpoint.pt").read_bytes() == before
    # resuming with other settings is refused
    with pytest.raises(ConfigError, match=r"recipe\.lr"):
        train(arch, recipe(epochs=1, lr=0.1), data=data, out_dir=out, resume=True)
    with pytest.raises(ConfigError, match="seed"):
        train(arch, recipe(epochs=1), data=data, out_dir=out, resume=True, seed=9)
    forced = train(arch, recipe(epochs=1, lr=0.1), data=data, out_dir=out, force=True)
    assert forced.completed and forced.history[0]["lr"] == 0.1


# -- corrupt checkpoints -------------------------------------------------------------------------
def corruptions(good: bytes) -> dict[str, bytes]:
    buf = __import__("io").BytesIO()
    torch.save({"weights": torch.zeros(3)}, buf)
    foreign = buf.getvalue()
    buf = __import__("io").BytesIO()
    torch.save({"format": "rwenas-train-checkpoint", "version": 1, "epoch": 1}, buf)
    incomplete = buf.getvalue()
    buf = __import__("io").BytesIO()
    torch.save({"obj": np.arange(3)}, buf)  # needs unpickling of numpy objects
    objects = buf.getvalue()
    flipped = bytearray(good)
    flipped[len(good) // 2] ^= 0xFF  # inside the weights: only the zip checksum notices
    return {
        "flipped": bytes(flipped),
        "truncated": good[: len(good) // 2],
        "truncated-tail": good[:-20],
        "random": np.random.default_rng(0).bytes(4096),
        "empty": b"",
        "foreign": foreign,
        "incomplete": incomplete,
        "objects": objects,
        "pickle": pickle.dumps({"a": 1}),
    }


MESSAGES = {
    "flipped": "corrupt", "truncated": "truncated or corrupt",
    "truncated-tail": "truncated or corrupt",
    "random": "truncated or corrupt", "empty": "empty", "foreign": "not an rwenas training",
    "incomplete": "incomplete", "objects": "refusing to unpickle", "pickle": "corrupt",
}


def test_corrupt_checkpoints_give_one_line_errors(tmp_path, data, arch, run_cli):
    out = tmp_path / "run"
    train(arch, recipe(epochs=1), data=data, out_dir=out)
    good = (out / "checkpoint.pt").read_bytes()
    for name, blob in corruptions(good).items():
        bad = tmp_path / name
        bad.mkdir()
        (bad / "checkpoint.pt").write_bytes(blob)
        with pytest.raises(CheckpointError, match=MESSAGES[name]) as info:
            load_checkpoint(bad)
        assert "\n" not in str(info.value) and len(str(info.value)) < 300
        with pytest.raises(CheckpointError):
            train(arch, recipe(epochs=1), data=data, out_dir=bad, resume=True)
        rc, o, e = run_cli("train", "--out", str(bad), "--resume", "--quiet")
        assert_one_line_error(rc, o, e, MESSAGES[name])
        rc, o, e = run_cli("export", str(bad))
        assert_one_line_error(rc, o, e, MESSAGES[name])
    # weights of another network
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    state["model"] = {"conv.weight": torch.zeros(1)}
    torch.save(state, tmp_path / "other.pt")
    (tmp_path / "other").mkdir()
    os.replace(tmp_path / "other.pt", tmp_path / "other" / "checkpoint.pt")
    with pytest.raises(CheckpointError, match="does not fit"):
        train(arch, recipe(epochs=1), data=data, out_dir=tmp_path / "other", resume=True)
    with pytest.raises(CheckpointError, match="no checkpoint"):
        load_checkpoint(tmp_path / "nowhere")


# -- picking from a search run -------------------------------------------------------------------
def make_search_run(path: Path, n: int = 5) -> list[dict]:
    space = MicroSpace()
    rng = np.random.default_rng(0)
    rows = []
    errors = [0.30, 0.22, 0.25, 0.18, 0.40][:n]
    madds = [3.0, 9.0, 5.0, 12.0, 1.5][:n]
    for err, m in zip(errors, madds, strict=True):
        g = space.sample(rng)
        rows.append({"genome": format_genome(g), "key": space.key(g), "rwe_error": err,
                     "madds_m": m, "params_m": m / 10, "objectives": {"rwe": err, "madds": m},
                     "generation": 3, "genotype": space.genotype_to_json(space.decode(g))})
    path.mkdir(parents=True)
    (path / "front.json").write_text(json.dumps(rows))
    (path / "config.json").write_text(json.dumps({"space": "micro", "dataset": "synthetic",
                                                  "seed": 0}))
    return rows


def test_pick_L_M_S_and_index(tmp_path):
    rows = make_search_run(tmp_path / "run")
    # errors 0.30 0.22 0.25 0.18 0.40; madds 3 9 5 12 1.5 → sorted by madds: 4 0 2 1 3
    assert pick_index(rows, "L") == 3
    assert pick_index(rows, "s") == 4
    assert pick_index(rows, "M") == 2
    assert pick_index(rows, "1") == 1 and pick_index(rows, -1) == 4
    assert pick_index(rows[:2], "M") == 1  # len 2 → index 1 of [0 (3 M), 1 (9 M)]
    picked = pick_from_run(tmp_path / "run", "L")
    assert picked.index == 3 and picked.architecture.label == "run:L"
    assert format_genome(picked.architecture.genome) == rows[3]["genome"]
    assert picked.source()["rwe_error"] == 0.18
    for bad, msg in (("X", "invalid --pick"), ("5", "out of range"), ("-6", "out of range")):
        with pytest.raises(ConfigError, match=msg):
            pick_from_run(tmp_path / "run", bad)
    with pytest.raises(ConfigError, match=r"no front\.json"):
        pick_from_run(tmp_path, "L")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "front.json").write_text("[]")
    (tmp_path / "empty" / "config.json").write_text('{"space": "micro"}')
    with pytest.raises(ConfigError, match="empty"):
        pick_from_run(tmp_path / "empty", "L")


# -- command line -------------------------------------------------------------------------------
CLI_TINY = ["--channels", "4", "--layers", "3", "--dataset", "synthetic", "--image-size", "12",
            "--train-size", "100", "--test-size", "40", "--batch-size", "25", "--quiet"]


def test_cli_train_from_run_and_resume(tmp_path, run_cli):
    make_search_run(tmp_path / "search")
    out = tmp_path / "trained"
    rc, o, e = run_cli("train", "--from-run", str(tmp_path / "search"), "--pick", "S",
                       "--epochs", "2", "--out", str(out), *CLI_TINY)
    assert rc == 0, e
    assert "test error" in o and "search:S" in o
    result = json.loads((out / "result.json").read_text())
    assert result["architecture"]["source"]["pick"] == "S"
    assert result["architecture"]["source"]["front_index"] == 4
    assert result["dataset"]["name"] == "synthetic"  # the search run's dataset
    assert result["epochs"] == 2 and len(result["final"]) > 0
    # an existing run is protected, and resuming needs no architecture flags
    rc, o, e = run_cli("train", "--arch", "DARTS", "--out", str(out), *CLI_TINY)
    assert_one_line_error(rc, o, e, "already holds a training run", "--resume", "--force")
    rc, o, e = run_cli("train", "--out", str(out), "--resume", "--quiet")
    assert rc == 0, e
    rc, o, e = run_cli("train", "--out", str(out), "--resume", "--epochs", "3", "--quiet")
    assert_one_line_error(rc, o, e, "recipe.epochs")
    rc, o, e = run_cli("train", "--out", str(out), "--resume", "--arch", "DARTS", "--quiet")
    assert_one_line_error(rc, o, e, "architecture given differs")
    assert read_run(out)["architecture"]["label"] == "search:S"


def test_cli_user_errors(tmp_path, run_cli):
    out = str(tmp_path / "o")
    cases = [
        (["train", "--out", out, *CLI_TINY], "give an architecture"),
        (["train", "--from-run", str(tmp_path), "--out", out, *CLI_TINY], "--pick"),
        (["train", "--arch", "DARTS", "--pick", "L", "--out", out, *CLI_TINY], "--from-run"),
        (["train", "--from-run", str(tmp_path), "--pick", "L", "--out", out, *CLI_TINY],
         "no front.json"),
        (["train", "--genome", "1 2 3", "--out", out, *CLI_TINY], "genome"),
        (["train", "--arch", "DARTS", "--out", out, "--momentum", "1.5", *CLI_TINY],
         "momentum"),
        (["train", "--arch", "DARTS", "--out", out, "--dataset", "nope"], "unknown dataset"),
        (["train", "--arch", "DARTS", "--out", out, "--lr", "abc"],
         "--lr: value must be a finite number >= 0, got 'abc'"),
        (["export", str(tmp_path / "missing")], "no checkpoint"),
    ]
    for argv, fragment in cases:
        rc, o, e = run_cli(*argv)
        assert_one_line_error(rc, o, e, fragment)


def test_cli_interrupt_message(tmp_path, run_cli, monkeypatch):
    import rwenas.train.run as loop

    real_fit = loop.fit

    def fit_then_interrupt(*args, **kwargs):
        callback = kwargs["on_epoch_end"]

        def stop(row):
            callback(row)
            raise KeyboardInterrupt

        kwargs["on_epoch_end"] = stop
        return real_fit(*args, **kwargs)

    monkeypatch.setattr(loop, "fit", fit_then_interrupt)
    out = tmp_path / "o"
    rc, _, e = run_cli("train", "--arch", "DARTS", "--epochs", "2", "--out", str(out),
                       *CLI_TINY)
    assert rc == 130
    assert "interrupted after epoch 1" in e and "--resume" in e
    assert load_checkpoint(out)["epoch"] == 1


def test_checkpoint_writes_are_atomic(tmp_path, data, arch, monkeypatch):
    import rwenas.fit.checkpoint as checkpoint

    out = tmp_path / "run"
    train(arch, recipe(epochs=2), data=data, out_dir=out, stop_after=1)
    before = (out / "checkpoint.pt").read_bytes()
    real_save = torch.save

    def crash_mid_write(obj, f):
        real_save(obj, f)
        f.truncate(100)  # a partial file, as when the machine dies while writing
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(checkpoint.torch, "save", crash_mid_write)
    with pytest.raises(OSError):
        train(arch, recipe(epochs=2), data=data, out_dir=out, resume=True)
    monkeypatch.setattr(checkpoint.torch, "save", real_save)
    assert (out / "checkpoint.pt").read_bytes() == before  # the old checkpoint is intact
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == []
    assert load_checkpoint(out)["epoch"] == 1
    done = train(arch, recipe(epochs=2), data=data, out_dir=out, resume=True)
    assert done.completed


def test_cli_resume_without_a_checkpoint_refuses_and_touches_nothing(tmp_path, run_cli):
    out = tmp_path / "fresh"
    rc, o, e = run_cli("train", "--arch", "DARTS", "--epochs", "1", "--out", str(out),
                       "--resume", *CLI_TINY)
    assert_one_line_error(rc, o, e, "nothing to resume", "no checkpoint.pt")
    assert not out.exists()
    foreign = tmp_path / "foreign"  # someone's files, no checkpoint
    foreign.mkdir()
    (foreign / "config.json").write_text('{"mine": 1}')
    (foreign / "metrics.csv").write_text("precious")
    rc, o, e = run_cli("train", "--arch", "DARTS", "--epochs", "1", "--out", str(foreign),
                       "--resume", *CLI_TINY)
    assert_one_line_error(rc, o, e, "nothing to resume", "config.json, metrics.csv")
    assert sorted(p.name for p in foreign.iterdir()) == ["config.json", "metrics.csv"]
    assert (foreign / "config.json").read_text() == '{"mine": 1}'
    assert (foreign / "metrics.csv").read_text() == "precious"
