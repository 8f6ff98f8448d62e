"""The ImageNet transfer recipe end to end on a tiny generated ImageFolder (3 classes, 16x16
PNGs, trained at 32x32 with the three-stride-2-conv ImageNet stem), top-1 and top-5: loaded
whole through the API, streamed from disk through the CLI."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch

from rwenas.build import resolve_architecture
from rwenas.data import load_dataset
from rwenas.fit.recipes import ImageNetRecipe
from rwenas.train.run import train

PIL = pytest.importorskip("PIL.Image")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """DIR/train/<class>/*.png and DIR/val/<class>/*.png; each class a colour and a stripe."""
    root = tmp_path_factory.mktemp("imagefolder")
    rng = np.random.default_rng(0)
    colours = np.array([[220, 40, 40], [40, 200, 60], [50, 60, 230]])
    for part, count in (("train", 12), ("val", 5)):
        for c, name in enumerate(("cat", "dog", "fox")):
            d = root / part / name
            d.mkdir(parents=True)
            for i in range(count):
                img = rng.integers(0, 60, (16, 16, 3))
                img = img + colours[c] * 0.7
                img[:, 4 * c:4 * c + 4] = 255
                PIL.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(d / f"{i}.png")
    return root


def test_imagenet_recipe_api(folder, tmp_path):
    recipe = ImageNetRecipe(epochs=3, warmup_epochs=1, batch_size=12, image_size=32,
                            channels=4, layers=3)
    ds = load_dataset("imagefolder", folder, image_size=32)
    assert ds.train_images.shape == (36, 3, 32, 32) and ds.num_classes == 3
    res = train(resolve_architecture("micro", arch="DARTS"), recipe, data=ds,
                out_dir=tmp_path / "run")
    assert res.completed
    net = res.network
    assert net.stem1 is not None and net.auxiliary_head is not None  # ImageNet stem + head
    # warm-up from 0, then linear decay to the final lr
    assert [row["lr"] for row in res.history] == pytest.approx(
        [0.0, 0.5, 1e-5 + (0.5 - 1e-5) * 0.5])
    assert all(row["drop_path"] == 0.0 for row in res.history)
    # three classes: the true class is always among the top 5
    assert all(row["test_top5"] == 1.0 for row in res.history)
    result = res.result
    assert result["test_top5_error"] == 0.0
    assert 0.0 <= result["test_error"] <= 1.0
    assert result["recipe"]["name"] == "imagenet" and result["recipe"]["label_smoothing"] == 0.1
    assert result["network"]["stem"] == "imagenet" and result["network"]["channels"] == 4
    rows = list(csv.DictReader((tmp_path / "run" / "metrics.csv").open()))
    assert "test_top5" in rows[0] and len(rows) == 3
    assert np.isfinite(result["madds_m"]) and result["madds_m"] > 0


def test_imagenet_recipe_cli(folder, tmp_path, run_cli):
    out = tmp_path / "cli"
    rc, o, e = run_cli("train", "--recipe", "imagenet", "--arch", "DARTS", "--data-dir",
                       str(folder), "--image-size", "32", "--channels", "4", "--layers", "3",
                       "--epochs", "2", "--warmup-epochs", "1", "--batch-size", "16",
                       "--out", str(out), "--quiet")
    assert rc == 0, e
    assert "top-5 error 0.00%" in o
    result = json.loads((out / "result.json").read_text())
    assert result["dataset"]["name"] == "imagefolder"
    assert result["data"]["image_size"] == 32 and result["data"]["num_classes"] == 3
    assert result["data"]["streamed"] is True  # read from disk in worker processes
    assert result["test_top5_error"] == 0.0
    ckpt = torch.load(out / "checkpoint.pt", weights_only=True)
    assert ckpt["epoch"] == 2
