"""Property test of the command line: any value of any option, and any TOML config file.

Hypothesis draws an argument list for a sub-command from the parser's own options (so a new
option is covered without touching this file) and settings files of known and unknown keys
with values of every TOML type. Whatever it draws, ``rwenas`` must exit 0 or 2; on 2 print
exactly one ``rwenas: error:`` line; never a traceback; and write nothing outside the output
directory. The heavy work after validation (the search loop, data loading, training, network
building) is replaced by stubs, so an example takes milliseconds.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import tempfile
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rwenas import cli
from rwenas.evaluation import Evaluation
from rwenas.search.config import DEFAULTS
from rwenas.search.nsga2 import SearchResult
from rwenas.search.store import RunStore

COMMANDS = ("show", "evaluate", "search", "train", "report", "export", "bench build")

#: Options whose value is a path to write (kept inside the output directory) or to read.
WRITES = {"--out", "--draw"}
READS = {"--config", "--genotype", "--genomes", "--data-dir", "--from-run", "--resume",
         "--initial-population"}
#: A plugin path imports a module: only these, never a random name (``antigravity:X``).
SPACES = ["micro", "macro", "nb301", "mobilenetv2", "nope", "os:system", "json:loads", ":",
          "no_such_module_q:X", "rwenas.spaces:MicroSpace"]
#: Objectives: built-ins, estimators and ``module:function`` (which imports: only these).
OBJECTIVES = ["rwe,madds", "rwe,params,latency", "rwe,latency_onnx", "jacob_cov,madds",
              "rwe,synflow,madds", "rwe,rwe", "rwe", "rwe,nope", "rwe,no_such_module_q:f",
              "rwe,json:nope", "rwe,json:dumps", "rwe,:f", "rwe,a b:c", ",", ""]
#: Picks: L/M/S, rows, the knee and budgets, well-formed or not.
PICKS = ["L", "M", "S", "knee", "0", "-1", "99", "madds<=10", "madds < 1e9", "rwe<0.5,madds<=3",
         "madds<=nan", "madds=<3", "flops<=1", "<=", "json:dumps<=1", "knee,L"]

NUMBERS = st.one_of(
    st.integers(-10**6, 10**6).map(str),
    st.integers(-10**40, 10**40).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["nan", "-nan", "inf", "-inf", "1e999", "0", "-0", "1", "2", "0.5", "1e-300",
                     "9" * 5000, "0x10", "1_000"]),
)
WORDS = st.one_of(
    st.sampled_from(["", " ", "-", "--", "auto", "cpu", "cuda", "cuda:7", "tpu", "L", "M",
                     "S", "DARTS", "rwe,madds", "rwe", "rwe,params,latency", "1,2,3", "4",
                     "0,0", "synthetic", "fashion-mnist", "local", "process", "ray", "<b>x</b>",
                     "a b", "latency", "kaiming_normal", "eval", "calibrated", "quick"]),
    st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
            max_size=12),
)


def _options(command: str) -> list[argparse.Action]:
    """The options of ``command`` (``"bench build"``: of a sub-sub-command)."""
    parser: argparse.ArgumentParser = cli.build_parser()
    for name in command.split():
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = sub.choices[name]
    return [a for a in parser._actions
            if a.option_strings and not isinstance(a, argparse._HelpAction)]


def _value(draw: Any, flag: str, work: Path, inputs: Path) -> str:
    if flag in WRITES:
        return str(work / "out" / draw(st.sampled_from(["run", "a/b", "x.svg", "x.dot"])))
    if flag in READS:
        return str(draw(st.sampled_from([inputs / "config.toml", inputs / "missing",
                                         inputs / "genotype.json", inputs])))
    if flag == "--space":
        return draw(st.sampled_from(SPACES))
    if flag == "--objectives":
        return draw(st.one_of(st.sampled_from(OBJECTIVES), NUMBERS))
    if flag == "--pick":
        return draw(st.one_of(st.sampled_from(PICKS), NUMBERS, WORDS))
    return draw(st.one_of(NUMBERS, WORDS))


@st.composite
def command_lines(draw: Any, work: Path, inputs: Path) -> list[str]:
    command = draw(st.sampled_from(COMMANDS))
    argv = command.split()
    if command == "report":
        argv.append(str(work / "out" / "run"))
    if command == "export" and draw(st.booleans()):
        argv.append(str(inputs / "missing"))
    if command == "bench build":
        argv.append(str(work / "out" / "bench"))
    options = _options(command)
    for action in draw(st.lists(st.sampled_from(options), max_size=6, unique_by=id)):
        flag = action.option_strings[-1]
        if action.nargs == 0:
            argv.append(flag)
        elif action.choices is not None and draw(st.booleans()):
            argv += [flag, str(draw(st.sampled_from(list(action.choices))))]
        else:
            argv += [flag, _value(draw, flag, work, inputs)]
    return argv


def _fake_search(config=None, run_dir=None, *, resume=None, force=False, **_: Any):
    """Stands in for the search loop: opens or creates the store as a real search would."""
    if resume is not None:
        RunStore.open(resume, lock=True).close()
        return SearchResult(Path(resume), [], 0, 0, 0.0)
    RunStore.create(run_dir, config, force=force, lock=True).close()
    return SearchResult(Path(run_dir), [], 0, 0, 0.0)


def _fake_evaluation(space, genome, *_: Any, **__: Any) -> Evaluation:
    return Evaluation(" ".join(map(str, genome)), "k", 0.5, 1.0, 0.1, 0.0, 0.0, 0.0, 0)


def _fake_train(*_: Any, **__: Any) -> SimpleNamespace:
    return SimpleNamespace(result={}, params_m=0.0, madds_m=0.0, epochs=0, seconds=0.0)


def _fake_build_bench(bench_dir, *, space="micro", size=30, retest=0, sampler="mixed",
                      budget=None, dataset="fashion-mnist", data_dir=None, seed=0,
                      **_: Any) -> dict[str, Any]:
    """The checks :func:`rwenas.study.bench.build_bench` makes before it trains anything."""
    from rwenas.spaces import get_space
    from rwenas.study.bench import BenchBudget, bench_config

    get_space(space)
    bench_config(space, dataset, budget or BenchBudget(), data_dir=data_dir, seed=seed,
                 sampler=sampler)
    return {"trained": 0, "size": size, "bench_dir": str(bench_dir)}


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}


def _run(argv: list[str], work: Path, inputs: Path) -> None:
    """Run ``rwenas argv`` in-process (stubbed) and check every invariant."""
    before = _files(inputs)
    threads = torch.get_num_threads()
    out, err = io.StringIO(), io.StringIO()
    cwd = os.getcwd()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("rwenas.search.nsga2.run_search", _fake_search)
        mp.setattr("rwenas.cli.evaluate.load_split", lambda args: (SimpleNamespace(), None))
        mp.setattr("rwenas.evaluation.evaluate_genome", _fake_evaluation)
        mp.setattr("rwenas.train.run.train", _fake_train)
        mp.setattr("rwenas.study.bench.build_bench", _fake_build_bench)
        mp.setattr("rwenas.study.bench.bench_summary", lambda *a, **k: {})
        mp.setattr("rwenas.study.bench.format_summary", lambda *a, **k: "")
        mp.setattr("rwenas.build.build_network", lambda *a, **k: torch.nn.Identity())
        mp.setattr("rwenas.complexity.complexity",
                   lambda *a, **k: SimpleNamespace(params_m=0.0, madds_m=0.0))
        os.chdir(work)
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                rc = cli.main(argv)
        finally:
            os.chdir(cwd)
            torch.set_num_threads(threads)
    stderr = err.getvalue()
    assert rc in (0, 2), (argv, rc, stderr)
    assert "Traceback" not in stderr + out.getvalue(), argv
    if rc == 2:
        lines = stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("rwenas: error:"), (argv, stderr)
    assert _files(inputs) == before, argv  # inputs untouched
    stray = [p for p in work.iterdir() if p.name != "out"]
    assert stray == [], (argv, stray)  # nothing written beside the output directory


def _inputs(root: Path) -> tuple[Path, Path]:
    work, inputs = root / "work", root / "inputs"
    work.mkdir()
    inputs.mkdir()
    (inputs / "config.toml").write_text('profile = "quick"\ndataset = "synthetic"\n')
    (inputs / "genotype.json").write_text(json.dumps({"normal": [], "reduce": []}))
    return work, inputs


PROPERTY = settings(max_examples=120, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@PROPERTY
@given(st.data())
def test_any_option_value_exits_0_or_2_with_one_error_line(data):
    with tempfile.TemporaryDirectory() as tmp:
        work, inputs = _inputs(Path(tmp))
        _run(data.draw(command_lines(work, inputs)), work, inputs)


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return ("nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
                if math.isinf(value) else repr(value))
    if isinstance(value, int | str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return "{" + ", ".join(f"{json.dumps(k)} = {_toml(v)}" for k, v in value.items()) + "}"


SCALARS = st.one_of(st.booleans(), st.integers(-2**63, 2**63 - 1), st.floats(), WORDS)
TOML_VALUES = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=3),
    st.dictionaries(st.sampled_from(["channels", "layers", "epochs", "lr", "device", "init",
                                     "bn_mode", "folds", "x"]), inner, max_size=3)),
    max_leaves=6)
KEYS = st.sampled_from([*DEFAULTS, "profile", "unknown_key"])


@PROPERTY
@given(st.dictionaries(KEYS, TOML_VALUES, max_size=5), st.booleans())
def test_any_config_file_exits_0_or_2_with_one_error_line(settings_, with_flags):
    with tempfile.TemporaryDirectory() as tmp:
        work, inputs = _inputs(Path(tmp))
        lines = [f"{json.dumps(k)} = {_toml(v)}" for k, v in settings_.items()]
        (inputs / "config.toml").write_text("\n".join(lines) + "\n")
        argv = ["search", "--config", str(inputs / "config.toml"), "--out",
                str(work / "out" / "run")]
        if with_flags:
            argv += ["--pop-size", "4", "--seed", "3"]
        _run(argv, work, inputs)
