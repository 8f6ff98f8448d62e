"""The training loop: :func:`fit` trains any ``nn.Module`` on a :class:`TrainData` with a
:class:`rwenas.fit.recipes.Recipe`. It serves ``rwenas train`` (:mod:`rwenas.train.run`), the
bench's ground truth and the short-training estimator, which is why it sits below the
estimators in the layers.

With an output directory a run is robust to interruption: after every epoch it writes an
atomic checkpoint (model, optimiser, gradient scaler, epoch, history and every random-number
state), the metrics CSV and the training-curve plot; at the end ``result.json``. Resuming
restores all of it, so an interrupted run continues bit for bit like an uninterrupted one
(on the same device and thread count). An output directory holding a run is never
overwritten unless ``force`` is given.

Files of an output directory: ``config.json`` (the run: architecture, network, recipe, data,
seed), ``checkpoint.pt``, ``metrics.csv``, ``curve.png`` and, once finished, ``result.json``.
"""

from __future__ import annotations

import copy
import json
import math
import random
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from rwenas.errors import ConfigError, DataError
from rwenas.fit.augment import Augmenter
from rwenas.fit.checkpoint import (
    CHECKPOINT_FORMAT,
    CHECKPOINT_NAME,
    CHECKPOINT_VERSION,
    CheckpointError,
    atomic_write_text,
    capture_rng,
    load_checkpoint,
    restore_rng,
    save_checkpoint,
)
from rwenas.fit.metrics import classification_loss, evaluate, evaluate_batches, forward_with_aux
from rwenas.fit.outputs import metrics_csv, plot_curves, result_json
from rwenas.fit.precision import (
    autocast_dtype,
    grouped_convs_in_fp32,
    to_channels_last,
)
from rwenas.fit.recipes import CifarRecipe, Recipe
from rwenas.fit.schedules import drop_path_prob, lr_at
from rwenas.models.ops import conv_avg_pools

__all__ = ["RUN_FILES", "EpochCallback", "TrainData", "TrainResult", "fit",
           "no_checkpoint_message", "seed_all"]

#: Files a training run writes into its output directory.
RUN_FILES = ("config.json", CHECKPOINT_NAME, "metrics.csv", "curve.png", "result.json")

EpochCallback = Callable[[dict[str, Any]], None]


# -- data -----------------------------------------------------------------------------------------
@dataclass(eq=False)
class TrainData:
    """``uint8`` NCHW training and test images with their labels and channel statistics.

    Images stay ``uint8`` (4x smaller than floats); each batch is augmented and normalised
    on the fly (:class:`rwenas.fit.augment.Augmenter`).
    """

    name: str
    train_images: torch.Tensor = field(repr=False)
    train_labels: torch.Tensor = field(repr=False)
    test_images: torch.Tensor = field(repr=False)
    test_labels: torch.Tensor = field(repr=False)
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]

    @property
    def in_channels(self) -> int:
        return int(self.train_images.shape[1])

    @property
    def image_size(self) -> int:
        return int(self.train_images.shape[-1])

    @classmethod
    def from_dataset(cls, ds: Any, *, train_size: int | None = None,
                     test_size: int | None = None, seed: int = 0) -> TrainData:
        """The full training set against the test set, as :func:`rwenas.data.test_split`
        picks them (the same seeded sub-samples), but kept as ``uint8``."""
        generator = torch.Generator().manual_seed(int(seed))

        def pick(count: int, size: int | None, what: str) -> torch.Tensor | slice:
            if size is None:
                return slice(None)
            if isinstance(size, bool) or not isinstance(size, int) or size < 1:
                raise ConfigError(f"{what} must be a positive integer, got {size!r}")
            if size > count:
                raise ConfigError(f"{what}={size} is larger than the {count} images available")
            return torch.randperm(count, generator=generator)[:size]

        if int(ds.test_images.shape[0]) == 0:
            raise DataError(f"{ds.name}: the test set is empty")
        tr = pick(int(ds.train_images.shape[0]), train_size, "train_size")
        te = pick(int(ds.test_images.shape[0]), test_size, "test_size")
        return cls(ds.name, ds.train_images[tr], ds.train_labels[tr], ds.test_images[te],
                   ds.test_labels[te], int(ds.num_classes), tuple(ds.mean), tuple(ds.std))

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "train_images": int(self.train_labels.shape[0]),
                "test_images": int(self.test_labels.shape[0]), "in_channels": self.in_channels,
                "image_size": self.image_size, "num_classes": self.num_classes}


# -- results ----------------------------------------------------------------------------------
@dataclass(eq=False)
class TrainResult:
    """What a (possibly stopped) training run produced."""

    network: nn.Module = field(repr=False)
    history: list[dict[str, Any]] = field(repr=False)
    epochs_done: int
    epochs: int
    params_m: float
    madds_m: float
    seconds: float
    out_dir: Path | None = None
    #: ``result.json``'s content once every epoch is done (``None`` when stopped early).
    result: dict[str, Any] | None = field(default=None, repr=False)

    @property
    def completed(self) -> bool:
        return self.epochs_done >= self.epochs

    @property
    def test_error(self) -> float | None:
        return 1.0 - self.history[-1]["test_acc"] if self.history else None

    @property
    def test_top5_error(self) -> float | None:
        if not self.history or "test_top5" not in self.history[-1]:
            return None
        return 1.0 - self.history[-1]["test_top5"]


# -- the loop --------------------------------------------------------------------------------------
def _derived_seed(seed: int, stream: int) -> int:
    return int(np.random.SeedSequence([int(seed) & (2**63 - 1), stream]).generate_state(
        1, np.uint64)[0] >> 1)


def seed_all(seed: int) -> None:
    """Seed torch, ``random`` and numpy from ``seed`` (each its own derived stream)."""
    torch.manual_seed(_derived_seed(seed, 0))
    random.seed(_derived_seed(seed, 2))
    np.random.seed(_derived_seed(seed, 3) % 2**32)


def _json_round(value: Any) -> Any:
    return json.loads(json.dumps(value))


def _comparable(run: Mapping[str, Any]) -> dict[str, Any]:
    """The parts of a run description a resume must not change (paths may move)."""
    out = _json_round(run)
    if isinstance(out.get("dataset"), dict):
        out["dataset"].pop("data_dir", None)
    return out


def _differences(a: Any, b: Any, prefix: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        diffs = []
        for key in sorted(set(a) | set(b)):
            diffs += _differences(a.get(key), b.get(key), f"{prefix}{key}.")
        return diffs
    return [] if a == b else [prefix.rstrip(".")]


def _prepare_out_dir(out: Path, resume: bool, force: bool) -> dict[str, Any] | None:
    """Create ``out``; the checkpoint to resume from, or ``None`` for a fresh start."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"output path {out} exists and is not a directory")
    present = [name for name in RUN_FILES if (out / name).exists()]
    if resume and (out / CHECKPOINT_NAME).exists():
        return load_checkpoint(out / CHECKPOINT_NAME)
    if resume:  # nothing to continue: refuse, and touch nothing (the files may be someone's)
        raise ConfigError(no_checkpoint_message(out, present))
    if present and not resume and not force:
        raise ConfigError(f"{out} already holds a training run ({', '.join(present)}); "
                          "give --resume to continue it or --force to start over")
    if present:  # forced
        for name in present:
            (out / name).unlink()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create output directory {out}: {exc.strerror}") from None
    return None


def no_checkpoint_message(out: Path, present: Sequence[str]) -> str:
    """Why ``--resume`` refuses an output directory without a checkpoint."""
    found = f" (it holds {', '.join(present)})" if present else ""
    return (f"nothing to resume in {out}: there is no {CHECKPOINT_NAME}{found}; start the run "
            "without --resume (--force replaces the files of an unfinished run)")


def _check_inputs(network: nn.Module, data: TrainData, recipe: Recipe) -> None:
    """:class:`ConfigError` if ``network`` cannot train on the recipe's images: a crop
    padding larger than the image, or an image size its layers (an auxiliary head built for
    32-pixel inputs) do not fit. One training-mode forward pass of a copy, on two blank
    images, with the random state restored: the run itself is unchanged."""
    size = int(recipe.image_size or data.image_size)
    if recipe.crop_padding > size:
        raise ConfigError(f"crop padding {recipe.crop_padding} is larger than the "
                          f"{size}-pixel images (at most {size})")
    probe = copy.deepcopy(network).cpu().train()
    x = torch.zeros(2, data.in_channels, size, size)
    try:
        with torch.random.fork_rng(devices=[]), torch.no_grad():
            forward_with_aux(probe, x)  # as a training step calls it: with the auxiliary head
    except (RuntimeError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else ""
        raise ConfigError(f"this network cannot train on {size}x{size} images "
                          f"({first}); use another --image-size") from None


class _Run:
    """State of one training run (see :func:`fit`)."""

    def __init__(self, network: nn.Module, data: TrainData, recipe: Recipe, *, seed: int,
                 device: torch.device, amp_dtype: torch.dtype | None) -> None:
        self.net = network
        self.data = data
        self.recipe = recipe
        self.seed = seed
        self.device = device
        self.amp_dtype = amp_dtype
        self.generator = torch.Generator()
        self.augmenter = Augmenter(recipe, data.mean, data.std)
        self.optimizer = torch.optim.SGD(network.parameters(), lr=recipe.lr,
                                         momentum=recipe.momentum,
                                         weight_decay=recipe.weight_decay)
        self.scaler = (torch.amp.GradScaler("cuda") if amp_dtype == torch.float16 else None)
        self.epoch = 0
        self.history: list[dict[str, Any]] = []
        self.elapsed = 0.0
        #: Whether batches are decoded from disk (:class:`rwenas.train.stream.StreamData`).
        self.streamed = bool(getattr(data, "streamed", False))
        if self.streamed:
            pin = device.type == "cuda"
            self.loader, self.sampler = data.train_loader(recipe.batch_size,
                                                          _derived_seed(seed, 4), recipe, pin)
            self.test_loader = data.test_loader(max(256, recipe.batch_size), pin)
        # Keep the uint8 images on the GPU when they fit comfortably (CIFAR: 150 MB).
        on_device = not self.streamed and device.type == "cuda" and (
            data.train_images.numel() + data.test_images.numel()) < 4 * 2**30
        self.images = {} if self.streamed else {
            "train": data.train_images.to(device) if on_device else data.train_images,
            "test": data.test_images.to(device) if on_device else data.test_images,
        }
        self.labels = {} if self.streamed else {
            "train": data.train_labels.to(device) if on_device else data.train_labels,
            "test": data.test_labels.to(device) if on_device else data.test_labels}
        n = int(data.train_labels.shape[0])
        bs = recipe.batch_size
        # A last batch of a single sample is dropped (BatchNorm needs two).
        self.steps = n // bs + (1 if n % bs >= 2 else 0)
        if self.steps == 0:
            raise ConfigError(f"need at least 2 training images, got {n}")

    def lr(self, epoch: float) -> float:
        r = self.recipe
        return lr_at(r.schedule, r.lr, epoch, r.epochs, warmup_epochs=r.warmup_epochs,
                     final=r.final_lr)

    # checkpoints
    def state(self, run_json: str) -> dict[str, Any]:
        return {
            "format": CHECKPOINT_FORMAT,
            "version": CHECKPOINT_VERSION,
            "epoch": self.epoch,
            "epochs": self.recipe.epochs,
            "run": run_json,
            "model": self.net.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": {"schedule": self.recipe.schedule, "epoch": self.epoch,
                          "lr": self.lr(self.epoch)},
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "rng": capture_rng(self.generator),
            "history": [dict(r) for r in self.history],
            "elapsed": float(self.elapsed),
        }

    def restore(self, ckpt: Mapping[str, Any]) -> None:
        path = ckpt.get("path", "checkpoint")
        try:
            self.net.load_state_dict(ckpt["model"])
        except (RuntimeError, KeyError, TypeError) as exc:
            first = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else ""
            raise CheckpointError(f"checkpoint {path} does not fit the network of its run "
                                  f"({first})") from None
        try:
            self.optimizer.load_state_dict(ckpt["optimizer"])
            if self.scaler is not None and ckpt.get("scaler"):
                self.scaler.load_state_dict(ckpt["scaler"])
            restore_rng(ckpt["rng"], self.generator)
        except (ValueError, KeyError, TypeError, RuntimeError, IndexError) as exc:
            raise CheckpointError(f"checkpoint {path} is damaged: cannot restore the "
                                  f"optimiser or random state ({type(exc).__name__})") from None
        epoch = ckpt["epoch"]
        if not 0 <= epoch <= self.recipe.epochs or len(ckpt["history"]) != epoch:
            raise CheckpointError(f"checkpoint {path} is damaged: epoch {epoch} with "
                                  f"{len(ckpt['history'])} history rows")
        self.epoch = epoch
        self.history = [dict(r) for r in ckpt["history"]]
        self.elapsed = float(ckpt["elapsed"])

    def _batches(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """This epoch's augmented training batches on the device, with their labels."""
        dev = self.device
        if self.streamed:
            self.sampler.epoch = self.epoch  # the loader's crops and order depend on it
            for images, labels in self.loader:
                yield (self.augmenter.train_cropped(images.to(dev, non_blocking=True),
                                                    self.generator),
                       labels.to(dev, non_blocking=True))
            return
        bs = self.recipe.batch_size
        images, labels = self.images["train"], self.labels["train"]
        perm = torch.randperm(int(self.data.train_labels.shape[0]), generator=self.generator)
        for step in range(self.steps):
            idx = perm[step * bs:(step + 1) * bs]
            if images.device != idx.device:
                idx = idx.to(images.device)
            yield (self.augmenter.train(images[idx].to(dev, non_blocking=True), self.generator),
                   labels[idx].to(dev, non_blocking=True))

    def evaluate(self) -> dict[str, float]:
        """Loss, top-1 and top-5 accuracy on the test images."""
        if self.streamed:
            return evaluate_batches(self.net, self.test_loader, self.augmenter,
                                    device=self.device, amp_dtype=self.amp_dtype)
        return evaluate(self.net, self.images["test"], self.labels["test"], self.augmenter,
                        device=self.device, batch_size=max(256, self.recipe.batch_size),
                        amp_dtype=self.amp_dtype)

    # one epoch
    def train_epoch(self, bar: Any) -> dict[str, float]:
        r, net, dev = self.recipe, self.net, self.device
        net.train()
        if hasattr(net, "drop_path_prob"):
            net.drop_path_prob = drop_path_prob(r.drop_path, self.epoch, r.epochs)
        batches = self._batches()
        loss_sum = torch.zeros((), dtype=torch.float64, device=dev)
        correct = torch.zeros((), dtype=torch.int64, device=dev)
        count = 0
        params = [p for p in net.parameters() if p.requires_grad]
        for step in range(self.steps):
            lr = self.lr(self.epoch + step / self.steps)
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            x, y = next(batches)
            x = to_channels_last(x)
            with torch.autocast(dev.type, dtype=self.amp_dtype or torch.float32,
                                enabled=self.amp_dtype is not None):
                logits, aux = forward_with_aux(net, x)
            loss = classification_loss(logits, y, r.label_smoothing)
            total = loss
            if aux is not None and r.auxiliary_weight > 0:
                total = loss + r.auxiliary_weight * classification_loss(aux, y,
                                                                        r.label_smoothing)
            self.optimizer.zero_grad(set_to_none=True)
            if self.scaler is not None:
                self.scaler.scale(total).backward()
                if r.grad_clip > 0:
                    self.scaler.unscale_(self.optimizer)
                    nn.utils.clip_grad_norm_(params, r.grad_clip)
                self.scaler.step(self.optimizer)
                self.scaler.update()
            else:
                total.backward()
                if r.grad_clip > 0:
                    nn.utils.clip_grad_norm_(params, r.grad_clip)
                self.optimizer.step()
            loss_sum += loss.detach().double() * y.shape[0]
            correct += (logits.detach().argmax(dim=1) == y).sum()
            count += int(y.shape[0])
            bar.update(1)
            if bar.disable is False and (step % 20 == 0 or step == self.steps - 1):
                bar.set_postfix(loss=f"{float(loss_sum) / count:.3f}",
                                acc=f"{int(correct) / count:.3f}", lr=f"{lr:.4g}",
                                refresh=False)
        mean_loss = float(loss_sum) / count
        if not math.isfinite(mean_loss):
            raise ConfigError(f"training diverged in epoch {self.epoch + 1} (mean loss "
                              f"{mean_loss}); lower the learning rate (--lr)")
        return {"loss": mean_loss, "acc": int(correct) / count}


def fit(network: nn.Module, data: TrainData, recipe: Recipe | None = None, *, seed: int = 0,
        device: str | torch.device = "auto", precision: str = "auto",
        out_dir: str | Path | None = None, run: Mapping[str, Any] | None = None,
        resume: bool = False, force: bool = False, progress: bool = False,
        stop_after: int | None = None, on_epoch_end: EpochCallback | None = None,
        test_every_epoch: bool = True, title: str = "") -> TrainResult:
    """Train ``network`` on ``data`` with ``recipe``; evaluate on the test images every epoch.

    ``out_dir`` makes the run resumable (see the module docstring); ``run`` is a JSON-able
    description stored with it (a resume must describe the same run). ``resume``: continue
    from the checkpoint in ``out_dir`` when there is one (else start). ``stop_after``: stop
    after this many epochs of this call (the checkpoint is kept). ``on_epoch_end(row)`` is
    called after each epoch's checkpoint is written (raising ``KeyboardInterrupt`` from it
    interrupts the run cleanly).

    ``precision``: ``auto`` trains under bfloat16 autocast where the device computes it
    natively (CUDA; CPUs with AVX512-BF16/AMX), float16 on older GPUs, float32 elsewhere;
    ``fp32`` forces float32; ``bf16`` insists (see :mod:`rwenas.fit.precision`). The
    network and every batch are channels-last. ``test_every_epoch=False`` evaluates on the
    test images only after the last epoch (the other epochs' test columns are NaN): for
    trainings whose only product is the final accuracy.
    """
    from tqdm.auto import tqdm

    from rwenas.complexity import complexity
    from rwenas.device import resolve_device

    recipe = recipe if recipe is not None else CifarRecipe()
    if stop_after is not None and (isinstance(stop_after, bool) or stop_after < 1):
        raise ConfigError(f"stop_after must be a positive integer, got {stop_after!r}")
    try:
        device = resolve_device(device)
    except RuntimeError as exc:
        raise ConfigError(f"unknown device {device!r}: {exc}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device cuda requested but CUDA is not available")
    amp_dtype = autocast_dtype(precision, device)
    run_info = _json_round({"recipe": recipe.to_dict(), "seed": int(seed),
                            "data": data.describe(), "precision": precision, **(run or {})})
    out = Path(out_dir) if out_dir is not None else None
    _check_inputs(network, data, recipe)  # before anything is written
    ckpt = _prepare_out_dir(out, resume, force) if out is not None else None
    if ckpt is not None:
        diffs = _differences(_comparable(ckpt["run"]), _comparable(run_info))
        if diffs:
            raise ConfigError(f"cannot resume {out} with different settings (changed: "
                              f"{', '.join(diffs[:6])}); drop them or use --force to start "
                              "over")
    run_json = json.dumps(run_info)

    cx = complexity(network, (data.in_channels, recipe.image_size or data.image_size,
                              recipe.image_size or data.image_size))
    if device.type == "cuda":
        # Bit-exact resume needs the same convolution algorithms in every process: no timed
        # (benchmark-mode) choice, which can differ from run to run, and no algorithm that
        # sums with atomics.
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
    network.to(device=device, memory_format=torch.channels_last)
    state = _Run(network, data, recipe, seed=seed, device=device, amp_dtype=amp_dtype)
    if ckpt is None:
        seed_all(seed)
        state.generator.manual_seed(_derived_seed(seed, 1))
        if out is not None:
            atomic_write_text(out / "config.json", json.dumps(run_info, indent=2) + "\n")
    else:
        state.restore(ckpt)

    r = recipe
    start = state.epoch
    bar = tqdm(total=r.epochs * state.steps, initial=start * state.steps, disable=not progress,
               unit="step", dynamic_ncols=True, leave=True)
    # CPU pooling kernels are slow on channels-last tensors: average pools run as convolutions
    pools = conv_avg_pools(network) if device.type == "cpu" else nullcontext()
    with bar, grouped_convs_in_fp32(network, device, amp_dtype), pools:
        while state.epoch < r.epochs:
            if stop_after is not None and state.epoch - start >= stop_after:
                break
            bar.set_description(f"epoch {state.epoch + 1}/{r.epochs}")
            t0 = time.perf_counter()
            lr0 = state.lr(state.epoch)
            dp = drop_path_prob(r.drop_path, state.epoch, r.epochs)
            tr = state.train_epoch(bar)
            if test_every_epoch or state.epoch + 1 == r.epochs:
                te = state.evaluate()
            else:
                te = {"loss": math.nan, "acc": math.nan, "top5": math.nan}
            seconds = time.perf_counter() - t0
            state.epoch += 1
            state.elapsed += seconds
            row: dict[str, Any] = {"epoch": state.epoch, "lr": lr0, "drop_path": dp,
                                   "train_loss": tr["loss"], "train_acc": tr["acc"],
                                   "test_loss": te["loss"], "test_acc": te["acc"]}
            if r.top5:
                row["test_top5"] = te["top5"]
            row["seconds"] = seconds
            state.history.append(row)
            if out is not None:
                save_checkpoint(state.state(run_json), out / CHECKPOINT_NAME)
                atomic_write_text(out / "metrics.csv", metrics_csv(state.history))
                plot_curves(state.history, out / "curve.png", title)
            post = {"test_acc": f"{te['acc']:.4f}"}
            if r.top5:
                post["top5"] = f"{te['top5']:.4f}"
            bar.set_postfix(post)
            if on_epoch_end is not None:
                on_epoch_end(dict(row))

    result = TrainResult(network, state.history, state.epoch, r.epochs, cx.params_m,
                         cx.madds_m, state.elapsed, out)
    if result.completed:
        result.result = result_json(result, run_info, device)
        if out is not None:
            atomic_write_text(out / "result.json", json.dumps(result.result, indent=2) + "\n")
    return result
