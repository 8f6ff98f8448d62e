"""Learning-rate and drop-path schedules: pure functions of the (fractional) epoch.

The training loop sets the learning rate before every step from ``epoch + step / steps``, so a
schedule is continuous over training (the paper's cosine reaches 0 at the end, and warm-up
rises smoothly instead of in five jumps). Being pure functions of the epoch, they need no
state of their own in a checkpoint: the epoch is enough to resume them exactly.
"""

from __future__ import annotations

import math

from rwenas.errors import ConfigError

__all__ = ["SCHEDULES", "cosine_lr", "drop_path_prob", "lr_at", "warmup_linear_lr"]


def cosine_lr(base: float, epoch: float, epochs: float, final: float = 0.0) -> float:
    """Cosine annealing from ``base`` at epoch 0 to ``final`` at ``epochs`` (SGDR, no restart).

    ``final + (base - final) * (1 + cos(pi * epoch / epochs)) / 2``; epochs outside
    ``[0, epochs]`` are clamped.
    """
    if epochs <= 0:
        raise ConfigError(f"epochs must be positive, got {epochs}")
    t = min(max(epoch / epochs, 0.0), 1.0)
    return final + (base - final) * 0.5 * (1.0 + math.cos(math.pi * t))


def warmup_linear_lr(base: float, epoch: float, epochs: float, warmup_epochs: float = 5.0,
                     final: float = 1e-5) -> float:
    """Linear warm-up from 0 to ``base`` over ``warmup_epochs``, then linear decay to ``final``
    at ``epochs`` (the mobile ImageNet recipe: 0 → 0.5 in 5 epochs, then → 1e-5 at 250)."""
    if epochs <= 0:
        raise ConfigError(f"epochs must be positive, got {epochs}")
    if warmup_epochs < 0 or warmup_epochs >= epochs:
        raise ConfigError(f"warm-up epochs must lie in [0, {epochs}), got {warmup_epochs}")
    epoch = min(max(epoch, 0.0), float(epochs))
    if epoch < warmup_epochs:
        return base * epoch / warmup_epochs
    return final + (base - final) * (epochs - epoch) / (epochs - warmup_epochs)


#: Schedule names accepted by :class:`rwenas.fit.recipes.Recipe`.
SCHEDULES = ("cosine", "warmup_linear")


def lr_at(schedule: str, base: float, epoch: float, epochs: float, *,
          warmup_epochs: float = 0.0, final: float = 0.0) -> float:
    """The learning rate of a named schedule; ``cosine`` with warm-up epochs rises linearly
    first and anneals over the remaining epochs."""
    if schedule == "cosine":
        if warmup_epochs > 0:
            if epoch < warmup_epochs:
                return base * max(epoch, 0.0) / warmup_epochs
            return cosine_lr(base, epoch - warmup_epochs, epochs - warmup_epochs, final)
        return cosine_lr(base, epoch, epochs, final)
    if schedule == "warmup_linear":
        return warmup_linear_lr(base, epoch, epochs, warmup_epochs, final)
    raise ConfigError(f"unknown schedule {schedule!r} (known: {', '.join(SCHEDULES)})")


def drop_path_prob(max_prob: float, epoch: int, epochs: int) -> float:
    """Drop-path probability during ``epoch`` (0-based): ``max_prob * epoch / epochs``, growing
    linearly from 0 (as DARTS and NSGA-Net train)."""
    if epochs <= 0:
        raise ConfigError(f"epochs must be positive, got {epochs}")
    return max_prob * epoch / epochs
