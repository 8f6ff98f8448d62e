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
    "check_integers", "check_stored_space", "format_genome", "get_space", "parse_genome",
]


#: What :func:`get_space` checks a plugin object for before using it as a search space.
_PROTOCOL = ("name", "n_var", "lower", "upper", "sample", "validate", "decode", "key",
             "genotype_to_json")


def _missing(obj: Any) -> list[str]:
    """The protocol members ``obj`` (a class or an instance) lacks: a space derived from a
    built-in one gets its network from :mod:`rwenas.models`, any other must define ``build``."""
    # a class may set name, n_var and the bounds only when instantiated
    members = _PROTOCOL[4:] if isinstance(obj, type) else _PROTOCOL
    missing = [m for m in members if not hasattr(obj, m)]
    builtin = tuple(BUILTIN_SPACES.values())
    derived = issubclass(obj, builtin) if isinstance(obj, type) else isinstance(obj, builtin)
    if not derived and not hasattr(obj, "build"):
        missing.append("build")
    return missing


def get_space(name: str, **options: Any) -> SearchSpace:
    """A search space by built-in name (``micro``, ``macro``, ``nb301``) or plugin path
    ``package.module:ClassName`` (the class is instantiated with ``options``).

    A plugin path imports, and so runs, that module: see :func:`check_stored_space` for
    names that come from a stored run rather than from the user.
    """
    if not isinstance(name, str):
        raise ConfigError(f"search space must be a name, got {name!r}")
    if name in BUILTIN_SPACES:
        return BUILTIN_SPACES[name](**options)
    if ":" in name:
        module_name, _, attr = name.partition(":")
        try:
            module = importlib.import_module(module_name)
        except Exception as exc:  # the module is the user's: any failure is theirs to fix
            first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
            raise ConfigError(f"cannot import search-space module {module_name!r}: "
                              f"{type(exc).__name__}: {first}") from None
        cls = getattr(module, attr, None) if attr.isidentifier() else None
        if cls is None:
            raise ConfigError(f"module {module_name!r} has no search space {attr!r}")
        if isinstance(cls, type):
            missing = _missing(cls)
            if missing:
                raise ConfigError(f"{name} is not a search space (no {', '.join(missing)})")
            try:
                space = cls(**options)
            except Exception as exc:
                raise ConfigError(f"cannot create search space {name}: "
                                  f"{type(exc).__name__}: {exc}") from None
        else:
            space = cls
        missing = _missing(space)
        if missing:
            raise ConfigError(f"{name} is not a search space (it has no "
                              f"{', '.join(missing)}; see docs/plugins.md)")
        return space
    raise ConfigError(f"unknown search space {name!r} (built-in: {', '.join(BUILTIN_SPACES)}; "
                      "or give a plugin as package.module:ClassName)")


def check_stored_space(name: Any, *, given: str | None = None, trust: bool = False,
                       where: str = "the stored run") -> None:
    """Refuse to import a plugin space named by a stored run unless the user vouches for it.

    A run directory or checkpoint may come from someone else, and a plugin name
    ``module:Class`` in it would import (run) ``module``. It is used only when the user names
    the same plugin again (``given``, from ``--space``) or passes ``trust``
    (``--trust-plugins``); otherwise :class:`ConfigError` names the module.
    """
    if not isinstance(name, str):
        raise ConfigError(f"{where} names no valid search space ({name!r})")
    if name in BUILTIN_SPACES or ":" not in name or trust or given == name:
        return
    module = name.partition(":")[0]
    raise ConfigError(f"{where} uses the plugin search space {name!r}; loading it imports and "
                      f"runs module {module!r}. If you trust it, give --space {name} (or "
                      "--trust-plugins)")
