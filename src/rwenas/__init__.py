"""rwenas: multi-objective NAS with Random-Weight Evaluation."""

__version__ = "0.1.0"
