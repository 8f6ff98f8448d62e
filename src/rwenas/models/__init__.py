"""Genotype → PyTorch network.

The built-in spaces' networks are known here, on the models side, so that :mod:`rwenas.spaces`
(pure, torch-free encodings) never imports this package; a plugin space builds its own
networks with its ``build`` method.
"""

from __future__ import annotations

from typing import Any

from rwenas.errors import ConfigError
from rwenas.models.base import Network
from rwenas.models.macro import MacroNetwork
from rwenas.models.micro import MicroNetwork
from rwenas.models.mobilenet import MobileNetwork
from rwenas.spaces import MacroSpace, MicroSpace, MobileNetSpace
from rwenas.spaces.macro import MacroGenotype
from rwenas.spaces.micro import Genotype
from rwenas.spaces.mobilenet import MobileGenotype

__all__ = ["NETWORKS", "MacroNetwork", "MicroNetwork", "MobileNetwork", "Network",
           "builtin_network", "create_network"]

#: (space class, genotype class, network class) of each built-in space; a subclass of a space
#: (nb301 is a micro space) builds the same network.
NETWORKS: tuple[tuple[type, type, type], ...] = (
    (MicroSpace, Genotype, MicroNetwork),
    (MacroSpace, MacroGenotype, MacroNetwork),
    (MobileNetSpace, MobileGenotype, MobileNetwork),
)


def create_network(space: Any, arch: Any, **setting: Any) -> Network:
    """The network of ``arch`` (a genome or a genotype of ``space``) built with ``setting``
    exactly as given (no preset: see :func:`rwenas.build.build_network` for named settings).

    A space's own ``build`` method wins, so a plugin space (or a subclass of a built-in one)
    decides how its networks are built."""
    build = getattr(space, "build", None)
    if build is not None:
        return build(arch, **setting)
    return builtin_network(space, arch, **setting)


def builtin_network(space: Any, arch: Any, **setting: Any) -> Network:
    """The network of a built-in space (or a subclass of one) for ``arch``, ignoring any
    ``build`` method: what a subclass's own ``build`` calls to wrap the built-in network."""
    for space_cls, genotype_cls, network_cls in NETWORKS:
        if isinstance(space, space_cls):
            genotype = arch if isinstance(arch, genotype_cls) else space.decode(arch)
            return network_cls(genotype, **setting)
    raise ConfigError(f"space {getattr(space, 'name', space)!r} is not derived from a "
                      "built-in space and has no build method (see docs/plugins.md)")
