"""Picking an architecture from a search run's Pareto front (``front.json``).

``L``: the lowest RWE error (ties: fewer multiply-adds); ``S``: the fewest multiply-adds (ties:
lower error); ``M``: the middle of the front sorted by multiply-adds (index ``len // 2``);
an integer: that row of ``front.json`` (0-based, in file order; negative counts from the end);
``knee``: the knee of the front over all the run's objectives; a budget such as
``"madds<=10"``: the lowest RWE error among the members within it, over any stored objective
(see :mod:`rwenas.search.picking`). The run's search space comes from its ``config.json``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rwenas.build import Architecture, load_json_file, resolve_architecture
from rwenas.errors import ConfigError, RwenasError
from rwenas.search.picking import LMS, is_budget, lms_index, select
from rwenas.spaces import check_stored_space

__all__ = ["PICKS", "Picked", "pick_from_run", "pick_index"]

PICKS = LMS


@dataclass(frozen=True)
class Picked:
    architecture: Architecture
    #: Row of front.json (0-based) and the row itself.
    index: int
    row: dict[str, Any]
    run_dir: Path
    pick: str
    config: dict[str, Any]

    def source(self) -> dict[str, Any]:
        """What to record about where the architecture came from."""
        return {"run_dir": str(self.run_dir), "pick": self.pick, "front_index": self.index,
                "key": self.row.get("key"), "rwe_error": self.row.get("rwe_error"),
                "search_madds_m": self.row.get("madds_m"),
                "search_dataset": self.config.get("dataset")}


def _objectives(rows: list[Mapping[str, Any]]) -> list[str]:
    first = rows[0].get("objectives") if rows else None
    return list(first) if isinstance(first, Mapping) else ["rwe", "madds"]


def pick_index(rows: list[Mapping[str, Any]], pick: str | int,
               objectives: list[str] | None = None) -> int:
    """The front.json row that ``pick`` (L, M, S, knee, a budget or an index) selects;
    ``objectives``: the run's (default: those of the rows)."""
    n = len(rows)
    if n == 0:
        raise ConfigError("the front is empty")
    text = str(pick).strip()
    chosen = select(rows, text, objectives or _objectives(rows))
    if chosen is not None:
        return chosen
    if text.upper() in PICKS:
        return lms_index(rows, text.upper(), objectives or _objectives(rows))
    try:
        index = int(text)
    except ValueError:
        raise ConfigError(f"invalid --pick {pick!r}: give L, M, S, knee, a budget like "
                          "'madds<=10' or a front row index") from None
    if not -n <= index < n:
        raise ConfigError(f"--pick {index} is out of range: the front has {n} architectures "
                          f"(0..{n - 1})")
    return index % n


def pick_from_run(run_dir: str | Path, pick: str | int, *, space: str | None = None,
                  trust_plugins: bool = False) -> Picked:
    """The architecture that ``pick`` selects from the search run in ``run_dir``.

    A plugin space named by the run is imported only if ``space`` names it too or
    ``trust_plugins`` (:func:`rwenas.spaces.check_stored_space`)."""
    run = Path(run_dir)
    if not run.is_dir():
        raise ConfigError(f"search run directory not found: {run}")
    if not (run / "front.json").is_file():
        raise ConfigError(f"{run} has no front.json (not a search run, or the search has not "
                          "finished a generation; `rwenas search --resume` writes it)")
    rows = load_json_file(run / "front.json", "front")
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise ConfigError(f"{run / 'front.json'} is not a list of architectures")
    config = load_json_file(run / "config.json", "search config") \
        if (run / "config.json").is_file() else None
    if not isinstance(config, dict) or not isinstance(config.get("space"), str):
        raise ConfigError(f"{run} has no config.json naming the search space")
    check_stored_space(config["space"], given=space, trust=trust_plugins,
                       where=f"the search run in {run}")
    objectives = config.get("objectives")
    try:
        index = pick_index(rows, pick, [str(o) for o in objectives]
                           if isinstance(objectives, list) else None)
    except RwenasError:
        raise
    except (TypeError, ValueError, AttributeError) as exc:  # front.json may come from anyone
        raise ConfigError(f"front.json of {run} is malformed: {exc}") from None
    row = rows[index]
    try:
        if row.get("genome") is not None:
            genome = row["genome"]
            arch = resolve_architecture(config["space"], genome=genome if isinstance(
                genome, str) else [int(g) for g in genome])
        elif row.get("genotype") is not None:
            arch = resolve_architecture(config["space"], genotype=row["genotype"])
        else:
            raise ConfigError("it has neither a genome nor a genotype")
    except RwenasError as exc:
        raise ConfigError(f"front.json row {index} of {run}: {exc}") from None
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"front.json row {index} of {run} is malformed: {exc}") from None
    text = str(pick).strip()
    if text.upper() in PICKS:
        name = text.upper()
    elif text.lower() == "knee":
        name = "knee"
    elif is_budget(text):
        name = text.replace(" ", "")
    else:
        name = str(index)
    arch = Architecture(arch.space, arch.genotype, arch.genome, f"{run.name}:{name}")
    return Picked(arch, index, dict(row), run.resolve(), name, config)
