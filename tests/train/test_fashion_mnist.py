"""On real Fashion-MNIST a small network learns far above chance in 2 epochs (a fast subset;
the full-size measurement is in the README)."""

from __future__ import annotations

import pytest

from rwenas.build import resolve_architecture
from rwenas.errors import RwenasError
from rwenas.fit.recipes import CifarRecipe
from rwenas.train.run import train


@pytest.fixture(scope="module")
def fashion():
    from rwenas.data import load_dataset

    try:
        return load_dataset("fashion-mnist")
    except RwenasError as exc:
        pytest.skip(f"Fashion-MNIST not available: {exc}")


def test_small_network_learns_fashion_mnist(fashion, tmp_path):
    recipe = CifarRecipe(channels=8, layers=3, epochs=2, batch_size=32, lr=0.05, cutout=0,
                         drop_path=0.0)
    res = train(resolve_architecture("micro", arch="DARTS"), recipe, data=fashion,
                train_size=2000, test_size=1000, out_dir=tmp_path / "run")
    # chance is 10 %; measured 63 % on this subset (56 % after the first epoch; 76 % on the
    # full set with the paper's regularisation, see the README)
    assert res.result["test_error"] < 0.5
    assert res.history[1]["test_acc"] > res.history[0]["test_acc"]
    assert res.history[1]["train_loss"] < res.history[0]["train_loss"]
    assert res.result["dataset"]["name"] == "fashion-mnist"
    assert res.result["data"]["in_channels"] == 1 and res.result["data"]["image_size"] == 28
