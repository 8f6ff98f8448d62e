"""Data augmentation on whole batches of image tensors, with an explicit random generator.

Every function takes an ``N x C x H x W`` float batch and a :class:`torch.Generator` and draws
one set of random parameters per sample — crop offsets, flip decisions, cutout centres, crop
boxes, jitter factors — as small tensors, then transforms the batch with tensor indexing,
broadcasting or one ``grid_sample``: no Python loop over samples, no torchvision. Random
numbers always come from the (CPU) generator, so a checkpoint that stores the generator's
state resumes the exact same augmentation; the parameters are moved to the batch's device.

Order of the pipelines (as torchvision-based DARTS/NSGA-Net training applies them):

* CIFAR: pixels in [0, 1] → padded random crop (zero = black padding) → horizontal flip →
  per-channel normalisation → cutout (zeroes a square of the normalised image).
* ImageNet: pixels in [0, 1] → random resized crop → horizontal flip → colour jitter
  (brightness, contrast, saturation, in that order) → normalisation. A streamed image folder
  crops each original image while decoding it (:mod:`rwenas.train.stream`) and applies the
  rest here (:meth:`Augmenter.train_cropped`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from rwenas.errors import ConfigError

__all__ = [
    "Augmenter",
    "color_jitter",
    "crop_resize",
    "cutout",
    "cutout_mask",
    "normalise",
    "random_crop",
    "random_flip",
    "random_resized_crop",
    "resized_crop_boxes",
]


def _uniform(n: int, low: float, high: float, generator: torch.Generator) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, generator=generator, dtype=torch.float64)


def random_crop(x: torch.Tensor, padding: int, generator: torch.Generator) -> torch.Tensor:
    """Pad with ``padding`` zeros on every side, then crop back to ``H x W`` at a random
    offset per sample (``torchvision.transforms.RandomCrop(H, padding)`` on each image)."""
    if padding <= 0:
        return x
    n, _, h, w = x.shape
    offsets = torch.randint(0, 2 * padding + 1, (2, n), generator=generator).to(x.device)
    padded = F.pad(x, (padding, padding, padding, padding))
    rows = (offsets[0, :, None] + torch.arange(h, device=x.device))[:, :, None]  # N x H x 1
    cols = (offsets[1, :, None] + torch.arange(w, device=x.device))[:, None, :]  # N x 1 x W
    batch = torch.arange(n, device=x.device)[:, None, None]
    # Advanced indices around a slice put their (N, H, W) dimensions first: N x H x W x C.
    return padded.permute(0, 2, 3, 1)[batch, rows, cols].permute(0, 3, 1, 2).contiguous()


def random_flip(x: torch.Tensor, generator: torch.Generator, p: float = 0.5) -> torch.Tensor:
    """Mirror each sample left-right with probability ``p``."""
    if p <= 0.0:
        return x
    flip = (torch.rand(x.shape[0], generator=generator) < p).to(x.device)
    return torch.where(flip[:, None, None, None], x.flip(-1), x)


def cutout_mask(n: int, height: int, width: int, size: int, generator: torch.Generator,
                device: torch.device | str = "cpu") -> torch.Tensor:
    """Boolean ``N x H x W`` masks, True inside each sample's cutout square.

    As DARTS's ``Cutout``: a centre ``(y, x)`` uniform over the pixels, the square
    ``[y - size//2, y + size//2) x [x - size//2, x + size//2)`` clipped to the image (so it
    is smaller near the border).
    """
    centres = torch.stack([torch.randint(0, height, (n,), generator=generator),
                           torch.randint(0, width, (n,), generator=generator)]).to(device)
    half = size // 2
    y0, y1 = (centres[0] - half).clamp(0, height), (centres[0] + half).clamp(0, height)
    x0, x1 = (centres[1] - half).clamp(0, width), (centres[1] + half).clamp(0, width)
    ys = torch.arange(height, device=device)
    xs = torch.arange(width, device=device)
    in_y = (ys >= y0[:, None]) & (ys < y1[:, None])  # N x H
    in_x = (xs >= x0[:, None]) & (xs < x1[:, None])  # N x W
    return in_y[:, :, None] & in_x[:, None, :]


def cutout(x: torch.Tensor, size: int, generator: torch.Generator) -> torch.Tensor:
    """Zero a ``size x size`` square (clipped at the border) of every sample, all channels."""
    if size <= 0:
        return x
    n, _, h, w = x.shape
    mask = cutout_mask(n, h, w, size, generator, x.device)
    return x.masked_fill(mask[:, None], 0.0)


def resized_crop_boxes(n: int, height: int, width: int, generator: torch.Generator,
                       scale: Sequence[float] = (0.08, 1.0),
                       ratio: Sequence[float] = (3 / 4, 4 / 3),
                       attempts: int = 10) -> torch.Tensor:
    """Crop boxes ``(top, left, box_height, box_width)`` per sample, ``N x 4`` (float64).

    torchvision's ``RandomResizedCrop.get_params``, vectorised: ``attempts`` candidate boxes
    per sample (area fraction uniform in ``scale``, log aspect ratio uniform in ``ratio``),
    the first that fits is taken; a sample with none that fits gets the central crop with the
    aspect ratio clamped into ``ratio``.
    """
    area = float(height * width)
    log_r = (math.log(ratio[0]), math.log(ratio[1]))
    target = area * _uniform(n * attempts, scale[0], scale[1], generator).view(n, attempts)
    aspect = torch.exp(_uniform(n * attempts, *log_r, generator)).view(n, attempts)
    box_w = torch.round(torch.sqrt(target * aspect))
    box_h = torch.round(torch.sqrt(target / aspect))
    fits = (box_w > 0) & (box_w <= width) & (box_h > 0) & (box_h <= height)
    first = torch.argmax(fits.to(torch.int8), dim=1)  # first fitting attempt (0 if none)
    ok = fits.any(dim=1)
    box_h = box_h.gather(1, first[:, None])[:, 0]
    box_w = box_w.gather(1, first[:, None])[:, 0]
    u = torch.rand(2, n, generator=generator, dtype=torch.float64)
    top = torch.floor(u[0] * (height - box_h + 1))
    left = torch.floor(u[1] * (width - box_w + 1))
    # Fallback: the whole image, or its centre with the aspect ratio clamped into ``ratio``.
    in_ratio = width / height
    if in_ratio < min(ratio):
        fb_w, fb_h = float(width), float(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        fb_h, fb_w = float(height), float(round(height * max(ratio)))
    else:
        fb_w, fb_h = float(width), float(height)
    fb_top, fb_left = (height - fb_h) // 2, (width - fb_w) // 2
    boxes = torch.stack([top, left, box_h, box_w], dim=1)
    fallback = torch.tensor([fb_top, fb_left, fb_h, fb_w], dtype=torch.float64)
    return torch.where(ok[:, None], boxes, fallback)


def random_resized_crop(x: torch.Tensor, size: int, generator: torch.Generator,
                        scale: Sequence[float] = (0.08, 1.0),
                        ratio: Sequence[float] = (3 / 4, 4 / 3)) -> torch.Tensor:
    """Crop a random box per sample and resize it to ``size x size`` (bilinear), in one
    ``affine_grid`` + ``grid_sample`` over the whole batch."""
    n, _, h, w = x.shape
    return crop_resize(x, resized_crop_boxes(n, h, w, generator, scale, ratio), size)


def crop_resize(x: torch.Tensor, boxes: torch.Tensor, size: int) -> torch.Tensor:
    """Crop box ``(top, left, height, width)`` (``N x 4``) of each sample, resized to
    ``size x size`` with bilinear interpolation (``align_corners=False``, edges clamped, as
    ``F.interpolate`` of the cropped region)."""
    n, _, h, w = x.shape
    top, left, bh, bw = boxes.to(torch.float64).cpu().unbind(1)
    # align_corners=False: normalised coordinate u ∈ [-1, 1] ↔ pixel edge position (u+1)/2·W.
    theta = torch.zeros(n, 2, 3, dtype=torch.float64)
    theta[:, 0, 0] = bw / w
    theta[:, 0, 2] = (2 * left + bw) / w - 1
    theta[:, 1, 1] = bh / h
    theta[:, 1, 2] = (2 * top + bh) / h - 1
    theta = theta.to(device=x.device, dtype=x.dtype)
    grid = F.affine_grid(theta, [n, x.shape[1], size, size], align_corners=False)
    # Sample only inside the box (its edge pixels repeat beyond it), as cropping first does.
    lo = torch.stack([(2 * left + 1) / w - 1, (2 * top + 1) / h - 1], dim=1)
    hi = torch.stack([(2 * (left + bw) - 1) / w - 1, (2 * (top + bh) - 1) / h - 1], dim=1)
    lo = lo.to(device=x.device, dtype=x.dtype)[:, None, None, :]
    hi = hi.to(device=x.device, dtype=x.dtype)[:, None, None, :]
    grid = torch.maximum(torch.minimum(grid, hi), lo)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def _grey(x: torch.Tensor) -> torch.Tensor:
    """ITU-R 601 luma, ``N x 1 x H x W`` (the image itself when it has one channel)."""
    if x.shape[1] == 1:
        return x
    weights = torch.tensor([0.299, 0.587, 0.114], device=x.device, dtype=x.dtype)
    return (x * weights.view(1, 3, 1, 1)).sum(dim=1, keepdim=True)


def color_jitter(x: torch.Tensor, generator: torch.Generator, brightness: float = 0.4,
                 contrast: float = 0.4, saturation: float = 0.4) -> torch.Tensor:
    """torchvision-style ``ColorJitter`` on pixels in [0, 1], one factor per sample and
    property, uniform in ``[max(0, 1 - s), 1 + s]``; applied as brightness, contrast,
    saturation (a fixed order), clamping to [0, 1] after each. Saturation is a no-op on
    single-channel images."""
    n = x.shape[0]

    def factors(strength: float) -> torch.Tensor:
        f = _uniform(n, max(0.0, 1.0 - strength), 1.0 + strength, generator)
        return f.to(device=x.device, dtype=x.dtype).view(n, 1, 1, 1)

    if brightness > 0:
        x = (x * factors(brightness)).clamp_(0.0, 1.0)
    if contrast > 0:
        f = factors(contrast)
        mean = _grey(x).mean(dim=(1, 2, 3), keepdim=True)
        x = (f * x + (1 - f) * mean).clamp_(0.0, 1.0)
    if saturation > 0:
        f = factors(saturation)
        if x.shape[1] > 1:
            x = (f * x + (1 - f) * _grey(x)).clamp_(0.0, 1.0)
    return x


def normalise(x: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """``(x - mean) / std`` per channel, for pixels in [0, 1]."""
    m = torch.tensor(mean, device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
    s = torch.tensor(std, device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
    return (x - m) / s


class Augmenter:
    """A recipe's training and test transforms: ``uint8`` batches → normalised ``float32``.

    ``train(images, generator)`` applies the recipe's random augmentation; ``test(images)``
    only converts and normalises (and resizes when the recipe's image size differs from the
    data's).
    """

    def __init__(self, recipe, mean: Sequence[float], std: Sequence[float]) -> None:
        self.recipe = recipe
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        if len(self.mean) != len(self.std):
            raise ConfigError("mean and std need one value per channel")

    @staticmethod
    def to_float(images: torch.Tensor) -> torch.Tensor:
        if images.dtype == torch.uint8:
            return images.to(torch.float32).div_(255.0)
        return images.to(torch.float32)

    def _size(self, x: torch.Tensor) -> int:
        return self.recipe.image_size or x.shape[-1]

    def train(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        r = self.recipe
        x = self.to_float(images)
        size = self._size(x)
        if r.resized_crop:
            x = random_resized_crop(x, size, generator, r.crop_scale, r.crop_ratio)
        else:
            if x.shape[-1] != size:
                x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False,
                                  antialias=True)
            x = random_crop(x, r.crop_padding, generator)
        return self._after_crop(x, generator)

    def train_cropped(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """The training transforms after the crop, for batches already cropped where they
        were decoded (streamed image folders, :mod:`rwenas.train.stream`): flip, colour
        jitter, normalisation, cutout."""
        return self._after_crop(self.to_float(images), generator)

    def _after_crop(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        r = self.recipe
        if r.flip:
            x = random_flip(x, generator)
        if r.color_jitter > 0:
            x = color_jitter(x, generator, r.color_jitter, r.color_jitter, r.color_jitter)
        x = normalise(x, self.mean, self.std)
        if r.cutout > 0:
            x = cutout(x, r.cutout, generator)
        return x

    def test(self, images: torch.Tensor) -> torch.Tensor:
        x = self.to_float(images)
        size = self._size(x)
        if x.shape[-1] != size:
            x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False,
                              antialias=True)
        return normalise(x, self.mean, self.std)
