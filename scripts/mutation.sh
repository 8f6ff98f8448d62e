#!/usr/bin/env bash
# Mutation testing of the core modules with mutmut — a habit, not a CI step (a full pass takes
# hours on 2 cores).
#
#   scripts/mutation.sh                 # every core module, one after another
#   scripts/mutation.sh rwe proxies     # just these (names below)
#
# Modules and the test files each is checked against (only those run, to keep it affordable):
#   rwe      src/rwenas/estimators/rwe.py       tests/estimators/test_rwe.py, test_rwe_options.py
#   proxies  src/rwenas/estimators/proxies.py   tests/estimators/test_proxies.py,
#                                               tests/estimators/test_proxies_reference.py
#   nsga2    src/rwenas/search/nsga2.py         tests/search/test_search_loop.py (made-up
#                                               evaluations, under a second per search), the
#                                               fake-executor constraints test of
#                                               tests/test_objectives.py; not test_nsga2.py,
#                                               whose real searches take tens of seconds each
#   store    src/rwenas/search/store.py         tests/search/test_store.py
#   spaces   src/rwenas/spaces/*.py             tests/spaces/test_*.py, test_equivalence.py (canonical
#                                               genomes), the mobilenet space test
#   html     src/rwenas/report/html.py          tests/report/test_html_units.py (hand-made
#                                               stores, stand-in plots) and the three tests
#                                               of tests/report/test_html.py that need no
#                                               search; not the others, which share real
#                                               searches (seconds per mutant)
#
# Each module runs in its own scratch copy, .mutation/<module>/ (src, tests and a pyproject.toml
# whose [tool.mutmut] section names that module and its tests), so runs never mix and the
# repository is left alone; mutmut's own working copy is .mutation/<module>/mutants/. A rerun
# reuses mutmut's cache there (delete the folder to start afresh). At the end of each module
# the script prints `killed/total` and the score; mutants not checked (time box) are counted
# separately and left out of the score.
#
# Environment: PYTHON (default .venv/bin/python, needs mutmut: pip install -e '.[dev]'),
# MUTMUT_CHILDREN (parallel mutants, default 1), MUTMUT_TIMEBOX (seconds per module, default
# 7200), NICE (default 10). Torch runs on one thread (OMP_NUM_THREADS=1).
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
PYTHON=${PYTHON:-$ROOT/.venv/bin/python}
CHILDREN=${MUTMUT_CHILDREN:-1}
TIMEBOX=${MUTMUT_TIMEBOX:-7200}
NICE=${NICE:-10}
export OMP_NUM_THREADS=1

declare -A SOURCES=(
  [rwe]="src/rwenas/estimators/rwe.py"
  [proxies]="src/rwenas/estimators/proxies.py"
  [nsga2]="src/rwenas/search/nsga2.py"
  [store]="src/rwenas/search/store.py"
  [spaces]="src/rwenas/spaces/*.py"
  [html]="src/rwenas/report/html.py"
)
declare -A TESTS=(
  [rwe]="tests/estimators/test_rwe.py tests/estimators/test_rwe_options.py"
  [proxies]="tests/estimators/test_proxies.py tests/estimators/test_proxies_reference.py"
  [nsga2]="tests/search/test_search_loop.py tests/test_objectives.py::test_constraints_decide_tournaments_and_survival"
  [store]="tests/search/test_store.py"
  [spaces]="tests/spaces/test_micro.py tests/spaces/test_macro.py tests/spaces/test_nb301.py tests/spaces/test_plugins.py tests/test_equivalence.py tests/test_objectives.py::test_mobilenet_space"
  [html]="tests/report/test_html_units.py tests/report/test_html.py::test_empty_run_then_failures_and_a_plugin_space tests/report/test_html.py::test_front_respects_the_runs_hard_constraints tests/report/test_html.py::test_not_a_run_is_a_one_line_config_error"
)
ORDER=(rwe proxies store spaces html nsga2)

modules=("$@")
[ ${#modules[@]} -eq 0 ] && modules=("${ORDER[@]}")
for m in "${modules[@]}"; do
  if [ -z "${SOURCES[$m]:-}" ]; then
    echo "mutation.sh: unknown module '$m' (known: ${ORDER[*]})" >&2
    exit 2
  fi
done

score() {  # killed/total of one scratch copy, from mutmut's per-file .meta records
  "$PYTHON" - "$1" <<'PY'
import json, pathlib, sys
killed = survived = other = unchecked = 0
for meta in pathlib.Path(sys.argv[1], "mutants").rglob("*.meta"):
    for code in json.loads(meta.read_text())["exit_code_by_key"].values():
        if code is None:
            unchecked += 1
        elif code in (1, 3):
            killed += 1
        elif code == 0:
            survived += 1
        else:
            other += 1  # timeout, segfault, no tests: not a kill by an assertion
total = killed + survived + other
pct = 100.0 * killed / total if total else float("nan")
print(f"{killed}/{total} killed ({pct:.1f} %), {survived} survived, {other} other "
      f"(timeout/no tests), {unchecked} not checked")
PY
}

for m in "${modules[@]}"; do
  work="$ROOT/.mutation/$m"
  mkdir -p "$work"
  rm -rf "$work/src" "$work/tests"
  cp -r src tests "$work/"
  # a pyproject.toml with pytest's settings and a [tool.mutmut] section for this module only
  "$PYTHON" - "$work/pyproject.toml" "${SOURCES[$m]}" ${TESTS[$m]} <<'PY'
import json, sys, tomllib
out, only, tests = sys.argv[1], sys.argv[2], sys.argv[3:]
pytest_opts = tomllib.load(open("pyproject.toml", "rb"))["tool"]["pytest"]["ini_options"]
lines = ["[tool.pytest.ini_options]"]
lines += [f"{k} = {json.dumps(v)}" for k, v in pytest_opts.items()]
lines += ["", "[tool.mutmut]", 'source_paths = ["src/rwenas"]',
          f"only_mutate = {json.dumps([only])}",
          f"pytest_add_cli_args_test_selection = {json.dumps(tests)}",
          'pytest_add_cli_args = ["-p", "no:cacheprovider"]',
          'process_isolation = "fork"', ""]
open(out, "w").write("\n".join(lines))
PY
  echo "== $m: ${SOURCES[$m]} against ${TESTS[$m]}"
  start=$(date +%s)
  # PYTHONPATH: subprocesses the tests start (the search's SIGKILL test) import the mutants
  # too; the folder must exist before Python starts, or its import machinery skips it for good
  mkdir -p "$work/mutants/src"
  (cd "$work" && PYTHONPATH="$work/mutants/src" timeout "$TIMEBOX" nice -n "$NICE" \
     "$PYTHON" -m mutmut run --max-children "$CHILDREN" > "$work/run.log" 2>&1)
  rc=$?
  [ $rc -eq 124 ] && echo "   (time box of ${TIMEBOX}s reached)"
  echo "   $(score "$work")   [$(( $(date +%s) - start )) s, log: .mutation/$m/run.log]"
done
