"""Search spaces: genome ⇄ genotype encodings, bounds, sampling and canonical keys."""

from __future__ import annotations

import importlib
from typing import Any

from rwenas.errors import ConfigError
from rwenas.spaces.base import (
    Genome,
    SearchSpace,
    canonical_genome,
    check_integers,
    format_genome,
    parse_genome,
)
from rwenas.spaces.macro import MacroGenotype, MacroSpace
from rwenas.spaces.micro import MICRO_OPS, Genotype, MicroSpace
from rwenas.spaces.mobilenet import MobileNetSpace
from rwenas.spaces.nb301 import NB301Space

BUILTIN_SPACES = {"micro": MicroSpace, "macro": MacroSpace, "nb301": NB301Space,
                  "mobilenetv2": MobileNetSpace}

__all__ = [
    "BUILTIN_SPACES", "MICRO_OPS", "Genome", "Genotype", "MacroGenotype", "MacroSpace",
    "MicroSpace", "MobileNetSpace", "NB301Space", "SearchSpace", "canonical_genome",
    "check_integers",
    "format_genome", "get_space", "parse_genome",
]


def get_space(name: str, **options: Any) -> SearchSpace:
    """A search space by built-in name (``micro``, ``macro``, ``nb301``) or plugin path
    ``package.module:ClassName`` (the class is instantiated with ``options``)."""
    if name in BUILTIN_SPACES:
        return BUILTIN_SPACES[name](**options)
    if ":" in name:
        module_name, _, attr = name.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise ConfigError(f"cannot import search-space module {module_name!r}: {exc}") from exc
        cls = getattr(module, attr, None)
        if cls is None:
            raise ConfigError(f"module {module_name!r} has no search space {attr!r}")
        space = cls(**options) if isinstance(cls, type) else cls
        return space
    raise ConfigError(f"unknown search space {name!r} (built-in: {', '.join(BUILTIN_SPACES)}; "
                      "or give a plugin as package.module:ClassName)")
