"""Genotype → PyTorch network."""

from rwenas.models.base import Network
from rwenas.models.macro import MacroNetwork
from rwenas.models.micro import MicroNetwork

__all__ = ["MacroNetwork", "MicroNetwork", "Network"]
