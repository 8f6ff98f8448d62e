"""Training building blocks against hand-computed values: schedules, label smoothing, top-k,
batched augmentation (crop, flip, cutout, resized crop, colour jitter), drop path, recipes."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from rwenas.data import make_synthetic, test_split
from rwenas.errors import ConfigError
from rwenas.fit.augment import (
    Augmenter,
    color_jitter,
    crop_resize,
    cutout,
    cutout_mask,
    random_crop,
    random_flip,
    random_resized_crop,
    resized_crop_boxes,
)
from rwenas.fit.loop import TrainData
from rwenas.fit.metrics import classification_loss, topk_correct
from rwenas.fit.recipes import CifarRecipe, ImageNetRecipe, Recipe, get_recipe
from rwenas.fit.schedules import cosine_lr, drop_path_prob, lr_at, warmup_linear_lr
from rwenas.models.ops import drop_path


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# -- schedules --------------------------------------------------------------------------------
def test_cosine_lr_hand_values():
    assert cosine_lr(0.025, 0, 600) == pytest.approx(0.025)
    assert cosine_lr(0.025, 300, 600) == pytest.approx(0.0125)
    assert cosine_lr(0.025, 600, 600) == pytest.approx(0.0, abs=1e-15)
    assert cosine_lr(0.025, 150, 600) == pytest.approx(0.025 * (1 + math.sqrt(0.5)) / 2)
    assert cosine_lr(1.0, 1.5, 3) == pytest.approx(0.5)  # fractional epochs
    assert cosine_lr(1.0, 1, 4, final=0.2) == pytest.approx(0.2 + 0.8 * (1 + math.cos(
        math.pi / 4)) / 2)
    # monotone decreasing
    values = [cosine_lr(0.1, e / 10, 10) for e in range(101)]
    assert all(a >= b for a, b in itertools.pairwise(values))


def test_warmup_linear_lr_hand_values():
    f = warmup_linear_lr
    assert f(0.5, 0, 250, 5, 1e-5) == 0.0
    assert f(0.5, 1, 250, 5, 1e-5) == pytest.approx(0.1)
    assert f(0.5, 2.5, 250, 5, 1e-5) == pytest.approx(0.25)
    assert f(0.5, 5, 250, 5, 1e-5) == pytest.approx(0.5)
    assert f(0.5, 127.5, 250, 5, 1e-5) == pytest.approx(1e-5 + (0.5 - 1e-5) * 0.5)
    assert f(0.5, 250, 250, 5, 1e-5) == pytest.approx(1e-5)
    assert f(0.5, 0, 10, 0, 0.0) == pytest.approx(0.5)  # no warm-up
    with pytest.raises(ConfigError):
        f(0.5, 0, 5, 5)
    assert lr_at("warmup_linear", 0.5, 2.5, 250, warmup_epochs=5, final=1e-5) == \
        pytest.approx(0.25)
    assert lr_at("cosine", 0.1, 2, 4) == pytest.approx(0.05)
    # cosine with warm-up: linear rise, then cosine over the remaining epochs
    assert lr_at("cosine", 0.1, 1, 12, warmup_epochs=2) == pytest.approx(0.05)
    assert lr_at("cosine", 0.1, 7, 12, warmup_epochs=2) == pytest.approx(0.05)
    with pytest.raises(ConfigError, match="unknown schedule"):
        lr_at("step", 0.1, 0, 10)


def test_drop_path_schedule_hand_values():
    assert [drop_path_prob(0.2, e, 600) for e in (0, 300, 599)] == \
        pytest.approx([0.0, 0.1, 0.2 * 599 / 600])
    assert drop_path_prob(0.2, 3, 4) == pytest.approx(0.15)


def test_drop_path_zeroes_whole_samples_and_rescales():
    torch.manual_seed(0)
    x = torch.rand(4000, 3, 4, 4) + 0.5
    y = drop_path(x, 0.3)
    # each sample is either dropped entirely or kept entirely, scaled by 1 / keep
    kept = (y.flatten(1) != 0).any(dim=1)
    assert torch.equal(y.flatten(1) != 0, kept[:, None].expand(-1, 48))
    assert torch.equal(y, x / 0.7 * kept.float().view(-1, 1, 1, 1))
    assert torch.allclose(y[kept], x[kept] / 0.7)
    assert (~kept).float().mean().item() == pytest.approx(0.3, abs=0.03)
    # the expectation is preserved
    assert y.mean().item() == pytest.approx(x.mean().item(), rel=0.05)
    assert drop_path(x, 0.0) is x


# -- losses and metrics ------------------------------------------------------------------------
def test_label_smoothing_matches_hand_computation():
    logits = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 3.0]])
    y = torch.tensor([0, 1])
    eps, k = 0.1, 3
    expected = 0.0
    for row, target in zip(logits.tolist(), y.tolist(), strict=True):
        log_z = math.log(sum(math.exp(v) for v in row))
        log_p = [v - log_z for v in row]
        q = [eps / k + (1 - eps if c == target else 0.0) for c in range(k)]
        expected += -sum(qc * lp for qc, lp in zip(q, log_p, strict=True))
    expected /= 2
    assert classification_loss(logits, y, eps).item() == pytest.approx(expected, rel=1e-6)
    plain = sum(-(row[t] - math.log(sum(math.exp(v) for v in row)))
                for row, t in zip(logits.tolist(), y.tolist(), strict=True)) / 2
    assert classification_loss(logits, y).item() == pytest.approx(plain, rel=1e-6)


def test_topk_on_hand_made_logits():
    logits = torch.tensor([
        [9.0, 8, 7, 6, 5, 4, 3],   # target 0: top-1
        [1.0, 9, 8, 7, 6, 5, 4],   # target 0: last → miss top-5
        [5.0, 9, 8, 7, 6, 1, 0],   # target 0: 5th → top-5 hit
        [0.0, 1, 2, 3, 4, 5, 9],   # target 2: 5th highest (9,5,4,3,2) → top-5 hit
    ])
    y = torch.tensor([0, 0, 0, 2])
    assert topk_correct(logits, y, (1, 5)) == [1, 3]
    assert topk_correct(logits, y, (1, 2, 7)) == [1, 1, 4]
    # fewer classes than k: every row is a top-5 hit
    three = torch.tensor([[0.1, 0.2, 0.3], [3.0, 2.0, 1.0]])
    assert topk_correct(three, torch.tensor([0, 2]), (1, 5)) == [0, 2]


# -- augmentation ------------------------------------------------------------------------------
def test_random_crop_equals_per_sample_loop():
    x = torch.rand(6, 3, 8, 8)
    out = random_crop(x, 4, gen(3))
    offsets = torch.randint(0, 9, (2, 6), generator=gen(3))
    padded = F.pad(x, (4, 4, 4, 4))
    for i in range(6):
        oy, ox = int(offsets[0, i]), int(offsets[1, i])
        assert torch.equal(out[i], padded[i, :, oy:oy + 8, ox:ox + 8])
    assert random_crop(x, 0, gen()) is x


def test_random_flip_per_sample():
    x = torch.rand(64, 2, 5, 5)
    out = random_flip(x, gen(1))
    flips = torch.rand(64, generator=gen(1)) < 0.5
    for i in range(64):
        assert torch.equal(out[i], x[i].flip(-1) if flips[i] else x[i])
    assert 10 < int(flips.sum()) < 54


def test_cutout_mask_area_and_position_hand_computed():
    n, h, w, size = 50, 32, 32, 16
    mask = cutout_mask(n, h, w, size, gen(7))
    cy = torch.randint(0, h, (n,), generator=gen(7))
    # the x centres come after the y centres from the same generator
    g = gen(7)
    torch.randint(0, h, (n,), generator=g)
    cx = torch.randint(0, w, (n,), generator=g)
    for i in range(n):
        y, x = int(cy[i]), int(cx[i])
        expected = torch.zeros(h, w, dtype=torch.bool)  # DARTS Cutout, numpy clipping
        y1, y2 = max(0, y - size // 2), min(h, y + size // 2)
        x1, x2 = max(0, x - size // 2), min(w, x + size // 2)
        expected[y1:y2, x1:x2] = True
        assert torch.equal(mask[i], expected), i
        assert int(mask[i].sum()) == (y2 - y1) * (x2 - x1)
    # a centre far from the border gives a full size x size square
    inside = (cy >= 8) & (cy <= 24) & (cx >= 8) & (cx <= 24)
    assert inside.any()
    assert all(int(mask[i].sum()) == 256 for i in torch.nonzero(inside)[:, 0].tolist())
    images = torch.ones(n, 3, h, w)
    cut = cutout(images, size, gen(7))
    assert torch.equal(cut == 0, mask[:, None].expand(-1, 3, -1, -1))
    assert cutout(images, 0, gen()) is images


def test_crop_resize_matches_interpolate_of_the_crop():
    x = torch.rand(2, 3, 20, 20)
    boxes = torch.tensor([[2.0, 5.0, 10.0, 8.0], [0.0, 0.0, 20.0, 20.0]])
    out = crop_resize(x, boxes, 12)
    ref0 = F.interpolate(x[:1, :, 2:12, 5:13], size=(12, 12), mode="bilinear",
                         align_corners=False)
    ref1 = F.interpolate(x[1:], size=(12, 12), mode="bilinear", align_corners=False)
    assert torch.allclose(out[:1], ref0, atol=1e-5)
    assert torch.allclose(out[1:], ref1, atol=1e-5)
    # the whole image at its own size is the identity
    same = crop_resize(x, torch.tensor([[0.0, 0, 20, 20]] * 2), 20)
    assert torch.allclose(same, x, atol=1e-5)


def test_resized_crop_boxes_follow_scale_and_ratio():
    h, w = 40, 30
    boxes = resized_crop_boxes(2000, h, w, gen(5), (0.08, 1.0), (3 / 4, 4 / 3))
    top, left, bh, bw = boxes.unbind(1)
    assert torch.all(top >= 0) and torch.all(left >= 0)
    assert torch.all(top + bh <= h) and torch.all(left + bw <= w)
    assert torch.all(bh >= 1) and torch.all(bw >= 1)
    area = bh * bw / (h * w)
    assert area.min() >= 0.08 * 0.8 and area.max() <= 1.0
    # rounding to whole pixels bends the ratio a little for small boxes
    assert (bw / bh).min() >= 0.75 * 0.8 and (bw / bh).max() <= 4 / 3 * 1.25
    # an impossible range falls back to the centre crop with the ratio clamped
    fb = resized_crop_boxes(3, 10, 40, gen(), (0.9, 1.0), (1.0, 1.0))
    assert torch.equal(fb, torch.tensor([[0.0, 15.0, 10.0, 10.0]] * 3, dtype=torch.float64))
    out = random_resized_crop(torch.rand(4, 3, 16, 16), 24, gen())
    assert out.shape == (4, 3, 24, 24)


def test_color_jitter_brightness_hand_computed():
    x = torch.rand(8, 3, 6, 6) * 0.6
    out = color_jitter(x, gen(2), brightness=0.4, contrast=0.0, saturation=0.0)
    u = torch.rand(8, generator=gen(2), dtype=torch.float64)
    factor = (0.6 + 0.8 * u).float().view(8, 1, 1, 1)
    assert torch.allclose(out, (x * factor).clamp(0, 1), atol=1e-6)
    # contrast and saturation keep pixels in [0, 1]; a grey image is unchanged by saturation
    full = color_jitter(torch.rand(8, 3, 6, 6), gen(3))
    assert full.min() >= 0 and full.max() <= 1
    grey = torch.rand(8, 1, 6, 6).expand(-1, 3, -1, -1).contiguous()
    assert torch.allclose(color_jitter(grey, gen(4), 0.0, 0.0, 0.4), grey, atol=1e-6)


def test_augmenter_pipelines():
    images = torch.randint(0, 256, (10, 3, 16, 16), dtype=torch.uint8)
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    cifar = Augmenter(CifarRecipe(cutout=4), mean, std)
    out = cifar.train(images, gen())
    assert out.shape == (10, 3, 16, 16) and out.dtype == torch.float32
    ref = (images.float() / 255 - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(
        std).view(1, 3, 1, 1)
    assert torch.allclose(cifar.test(images), ref, atol=1e-6)
    # no augmentation at all: train == test
    plain = Augmenter(CifarRecipe(cutout=0, crop_padding=0, flip=False), mean, std)
    assert torch.allclose(plain.train(images, gen()), ref, atol=1e-6)
    imagenet = Augmenter(ImageNetRecipe(image_size=24), mean, std)
    assert imagenet.train(images, gen()).shape == (10, 3, 24, 24)
    assert imagenet.test(images).shape == (10, 3, 24, 24)
    # the same generator state gives the same batch
    assert torch.equal(cifar.train(images, gen(9)), cifar.train(images, gen(9)))


# -- recipes and data --------------------------------------------------------------------------
def test_recipe_defaults_are_the_paper_settings():
    c = CifarRecipe()
    assert (c.epochs, c.batch_size, c.lr, c.momentum, c.weight_decay, c.grad_clip) == \
        (600, 96, 0.025, 0.9, 3e-4, 5.0)
    assert (c.auxiliary_weight, c.drop_path, c.cutout, c.crop_padding, c.flip) == \
        (0.4, 0.2, 16, 4, True)
    assert (c.schedule, c.setting, c.label_smoothing) == ("cosine", "validation", 0.0)
    i = ImageNetRecipe()
    assert (i.epochs, i.batch_size, i.lr, i.momentum, i.weight_decay) == \
        (250, 1024, 0.5, 0.9, 3e-5)
    assert (i.schedule, i.warmup_epochs, i.final_lr, i.label_smoothing) == \
        ("warmup_linear", 5.0, 1e-5, 0.1)
    assert (i.image_size, i.resized_crop, i.color_jitter, i.top5, i.setting) == \
        (224, True, 0.4, True, "imagenet")
    assert i.auxiliary_weight == 0.4
    assert Recipe.from_dict(i.to_dict()) == i
    assert isinstance(Recipe.from_dict(i.to_dict()), ImageNetRecipe)
    assert get_recipe("cifar", epochs=3, lr=None).epochs == 3


@pytest.mark.parametrize("changes", [
    {"epochs": 0}, {"lr": -1.0}, {"momentum": 1.0}, {"drop_path": 1.0}, {"cutout": -2},
    {"schedule": "step"}, {"warmup_epochs": 700}, {"channels": 0}, {"crop_scale": (0.5, 2.0)},
    {"batch_size": 2.5}, {"lr": float("nan")},
])
def test_recipe_rejects_bad_values(changes):
    with pytest.raises(ConfigError):
        CifarRecipe().replace(**changes)


def test_unknown_recipe_fields_and_names():
    with pytest.raises(ConfigError, match="unknown recipe field"):
        CifarRecipe().replace(learning_rate=0.1)
    with pytest.raises(ConfigError, match="unknown recipe"):
        get_recipe("mnist")


def test_train_data_picks_what_test_split_picks():
    ds = make_synthetic(120, 60, image_size=8, num_classes=3, seed=1)
    for sizes in ({}, {"train_size": 50}, {"test_size": 20}, {"train_size": 30, "test_size": 9}):
        data = TrainData.from_dataset(ds, seed=4, **sizes)
        split = test_split(ds, seed=4, **sizes)
        assert torch.equal(ds.normalise(data.train_images), split.train_x)
        assert torch.equal(data.train_labels, split.train_y)
        assert torch.equal(ds.normalise(data.test_images), split.val_x)
        assert torch.equal(data.test_labels, split.val_y)
    with pytest.raises(ConfigError, match="larger than"):
        TrainData.from_dataset(ds, train_size=500)
