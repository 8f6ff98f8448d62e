"""Warm starts: the genomes that seed a search's first generation.

``--initial-population`` takes a genomes file (one genome per line, ``#`` comments, or a JSON
list of genomes) or another run's directory, whose Pareto front is used. The genomes are
validated against the space and stored in the run's configuration, so a resumed run does not
need the file any more. Fewer genomes than the population are topped up with random ones; a
front larger than the population is thinned evenly along its last objective (the front is
sorted by it), keeping both ends.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from rwenas.errors import ConfigError, RwenasError
from rwenas.spaces import SearchSpace, get_space, parse_genome


def read_genomes_file(path: str | Path) -> list[str]:
    """Genome texts from a file (for :func:`rwenas.spaces.parse_genome`): one per line (blank
    lines and # comments skipped) or a JSON list of genome strings or integer lists."""
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read genomes file {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"genomes file {path} is not a text file") from None
    if text.lstrip().startswith("["):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"genomes file {path} is not valid JSON: {exc.msg}") from None
        except (ValueError, RecursionError):  # a huge integer, or nesting without end
            raise ConfigError(f"genomes file {path} is not a list of genomes") from None
        if not isinstance(data, list) or not all(
                isinstance(g, str | int) or (isinstance(g, list) and all(
                    isinstance(v, int | str) for v in g)) for g in data):
            raise ConfigError(f"genomes file {path} must hold a list of genomes (lists of "
                              "integers or strings)")
        genomes = [" ".join(map(str, g)) if isinstance(g, list) else str(g) for g in data]
    else:
        lines = [ln.split("#", 1)[0].strip() for ln in text.splitlines()]
        genomes = [ln for ln in lines if ln]
    if not genomes:
        raise ConfigError(f"genomes file {path} holds no genome")
    return genomes


def front_genomes(run_dir: str | Path, space_name: str) -> list[Any]:
    """The genomes of the Pareto front of the search run in ``run_dir`` (read from its store),
    which must have searched the space ``space_name`` (as its configuration names it)."""
    from rwenas.search.front import pareto_front
    from rwenas.search.store import RunStore

    with RunStore.open(run_dir) as store:
        config = store.config
        if not isinstance(config, dict) or config.get("space") != space_name:
            space = config.get("space") if isinstance(config, dict) else None
            raise ConfigError(f"run {run_dir} searched the {str(space)[:80]} space, not "
                              f"{space_name}")
        try:  # the run may come from anyone: a damaged store is one line
            front = pareto_front(store.evaluations(), config)
        except RwenasError:
            raise
        except (TypeError, ValueError, KeyError) as exc:
            raise ConfigError(f"run {run_dir} has a damaged store ({exc})") from None
    if config.get("space") != space_name:
        raise ConfigError(f"run {run_dir} searched the {config.get('space')} space, not "
                          f"{space_name}")
    if not front:
        raise ConfigError(f"run {run_dir} has no front yet")
    return [e["genome"] for e in front]


def thin(genomes: list[Any], n: int) -> list[Any]:
    """``n`` of ``genomes``, evenly spaced, first and last kept."""
    if len(genomes) <= n:
        return list(genomes)
    idx = np.unique(np.round(np.linspace(0, len(genomes) - 1, n)).astype(int))
    return [genomes[i] for i in idx]


def load_initial_population(source: str | Path, space: str, pop_size: int
                            ) -> list[list[int]]:
    """Validated genomes of the search space ``space`` (its name or plugin path) from a
    genomes file or a run directory (its front, thinned to ``pop_size``). A file with more
    genomes than ``pop_size`` is an error."""
    path = Path(source)
    space_obj: SearchSpace = get_space(space)
    if path.is_dir():
        if not (path / "run.db").is_file():
            raise ConfigError(f"--initial-population {path}: not a search run directory "
                              "(no run.db) and not a genomes file")
        genomes = thin(front_genomes(path, space), pop_size)
    elif path.is_file():
        genomes = read_genomes_file(path)
        if len(genomes) > pop_size:
            raise ConfigError(f"--initial-population {path} holds {len(genomes)} genomes, more "
                              f"than the population size {pop_size}")
    else:
        raise ConfigError(f"--initial-population {path}: no such file or run directory")
    out = []
    for i, g in enumerate(genomes):
        try:
            if not isinstance(g, str | list) or (isinstance(g, list) and not all(
                    isinstance(v, int) and not isinstance(v, bool) for v in g)):
                raise ConfigError("not a genome (a string or a list of integers)")
            genome = parse_genome(g) if isinstance(g, str) else g
            out.append([int(v) for v in space_obj.validate(genome)])
        except (RwenasError, TypeError, ValueError) as exc:
            raise ConfigError(f"--initial-population {path}: genome {i + 1}: {exc}") from None
    return out
