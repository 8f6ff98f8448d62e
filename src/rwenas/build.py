"""(space, genome or genotype, setting) → network, with the paper's named settings.

Settings name the scale a network is built at: ``search`` (the RWE setting of the paper),
``validation`` (deployment-scale CIFAR training) and ``imagenet`` (mobile ImageNet transfer).
Every value can be overridden; ``in_channels`` and ``num_classes`` come from the dataset.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rwenas.errors import ConfigError, GenomeError, RwenasError
from rwenas.models import create_network
from rwenas.spaces import SearchSpace, get_space, parse_genome
from rwenas.spaces.published import published

#: Built-in settings per space (paper §4 and SPEC §4, §5, §7).
PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "micro": {
        "search": {"channels": 10, "layers": 5},
        "validation": {"channels": 34, "layers": 20, "increment": 4, "auxiliary": True,
                       "drop_path": 0.2},
        "imagenet": {"channels": 48, "layers": 14, "stem": "imagenet", "auxiliary": True},
    },
    "macro": {
        # NSGA-Net searches with the residual decoder and trains with the dense one; its first
        # 3×3 convolution is unpadded (32×32 → 30×30).
        "search": {"channels": (32, 64, 128), "decoder": "residual", "pad_first": False},
        "validation": {"channels": (128, 128, 128), "decoder": "dense", "pad_first": False},
        "imagenet": {"channels": (128, 128, 128), "decoder": "dense", "pad_first": False},
    },
}
PRESETS["nb301"] = PRESETS["micro"]


def preset(space: SearchSpace, setting: str) -> dict[str, Any]:
    """The named setting of a space (built-in table, or a plugin space's ``presets``)."""
    table = getattr(space, "presets", None) or PRESETS.get(space.name, {})
    if setting not in table:
        if not table and setting == "search":
            return {}
        raise ConfigError(f"space {space.name!r} has no setting {setting!r} "
                          f"(known: {', '.join(table) or 'none'})")
    return dict(table[setting])


def build_network(space: SearchSpace, arch: Any, *, in_channels: int, num_classes: int,
                  setting: str = "search", **overrides: Any):
    """Build the network of ``arch`` (a genome or a genotype) at a named setting."""
    options = preset(space, setting)
    options.update({k: v for k, v in overrides.items() if v is not None})
    options.update(in_channels=in_channels, num_classes=num_classes)
    try:
        return create_network(space, arch, **options)
    except RwenasError:
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"cannot build a {space.name} network with {options}: {exc}") from exc


@dataclass(frozen=True)
class Architecture:
    """A resolved architecture: its genome (if it has one in the space) and genotype."""

    space: SearchSpace
    genotype: Any
    genome: tuple[int, ...] | None
    label: str

    def to_json(self) -> dict[str, Any]:
        return {
            "space": self.space.name,
            "label": self.label,
            "genome": None if self.genome is None else list(self.genome),
            "genotype": self.space.genotype_to_json(self.genotype),
        }


def load_json_file(path: str | Path, what: str) -> Any:
    """Read a JSON file with one-line errors for missing/unreadable/invalid files."""
    p = Path(path)
    try:
        text = p.read_text()
    except FileNotFoundError:
        raise ConfigError(f"{what} file not found: {p}") from None
    except OSError as exc:
        raise ConfigError(f"cannot read {what} file {p}: {exc.strerror}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{what} file {p} is not valid JSON (line {exc.lineno}: "
                          f"{exc.msg})") from None
    except RecursionError:
        raise ConfigError(f"{what} file {p} is nested too deeply to be a {what}") from None
    except ValueError as exc:  # e.g. an integer beyond Python's digit limit
        raise ConfigError(f"{what} file {p} is not valid JSON ({exc})") from None


def resolve_architecture(space: SearchSpace | str, *, genome: str | Sequence[int] | None = None,
                         genotype: Any = None, genotype_file: str | Path | None = None,
                         arch: str | None = None) -> Architecture:
    """Exactly one of genome / genotype / genotype_file / arch → :class:`Architecture`."""
    if isinstance(space, str):
        space = get_space(space)
    given = [x is not None for x in (genome, genotype, genotype_file, arch)]
    if sum(given) != 1:
        raise ConfigError("give exactly one of --genome, --genotype or --arch")
    if genome is not None:
        g = space.validate(parse_genome(genome) if isinstance(genome, str) else genome)
        return Architecture(space, space.decode(g), g, "genome")
    if arch is not None:
        gt = published(space.name, arch)
        return Architecture(space, gt, _try_encode(space, gt), arch)
    if genotype_file is not None:
        genotype = load_json_file(genotype_file, "genotype")
        if isinstance(genotype, Mapping) and "genotype" in genotype and "space" in genotype:
            genotype = genotype["genotype"]  # a file written by `rwenas show --json`
    from_json = getattr(space, "genotype_from_json", None)
    if from_json is None:
        raise ConfigError(f"space {space.name!r} cannot read genotypes; give a genome")
    gt = from_json(genotype)
    return Architecture(space, gt, _try_encode(space, gt), str(genotype_file or "genotype"))


def _try_encode(space: SearchSpace, genotype: Any) -> tuple[int, ...] | None:
    encode = getattr(space, "encode", None)
    if encode is None:
        return None
    try:
        return encode(genotype)
    except GenomeError:
        return None  # e.g. published cells whose concat is not the loose ends
