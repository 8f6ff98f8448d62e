"""The ``rwenas`` command line: thin sub-commands over the Python API, one module per command
group (:mod:`~rwenas.cli.show`, :mod:`~rwenas.cli.evaluate`, :mod:`~rwenas.cli.search`,
:mod:`~rwenas.cli.train`, :mod:`~rwenas.cli.export`, :mod:`~rwenas.cli.report`,
:mod:`~rwenas.cli.bench`, :mod:`~rwenas.cli.study`) sharing :mod:`~rwenas.cli.args`.

User mistakes (:class:`rwenas.errors.RwenasError`) print one line on stderr and exit 2; an
interrupt exits 130. Tracebacks are kept for genuine bugs.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from rwenas import __version__
from rwenas.cli.args import Parser
from rwenas.cli.bench import add_bench
from rwenas.cli.evaluate import add_evaluate
from rwenas.cli.export import add_export
from rwenas.cli.report import add_report
from rwenas.cli.search import add_search
from rwenas.cli.show import add_show
from rwenas.cli.study import add_study
from rwenas.cli.train import add_train
from rwenas.errors import RwenasError

__all__ = ["COMMANDS", "build_parser", "main"]

COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [
    add_show, add_evaluate, add_search, add_train, add_export, add_report, add_bench, add_study]


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="rwenas", description="Multi-objective NAS with Random-Weight "
                     "Evaluation")
    parser.add_argument("--version", action="version", version=f"rwenas {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    for add in COMMANDS:
        add(sub)
    return parser


class _OutputError(RwenasError):
    """Standard output cannot be written (a closed pipe, a full disk)."""


class _GuardedStdout:
    """Standard output whose failed writes raise :class:`_OutputError`: ``rwenas ... | head
    -1`` or ``> /dev/full`` end with one error line, not an ``OSError`` traceback."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except OSError as exc:
            raise _OutputError(f"cannot write to standard output: "
                               f"{exc.strerror or exc}") from None

    def flush(self) -> None:
        try:
            self._stream.flush()
        except OSError as exc:
            raise _OutputError(f"cannot write to standard output: "
                               f"{exc.strerror or exc}") from None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def _silence_stdout(stream: Any) -> None:
    """Point a failed standard output at /dev/null, so that the interpreter's last flush of
    what is still buffered does not print a second error."""
    try:
        fd = stream.fileno()
        devnull = os.open(os.devnull, os.O_WRONLY)
    except (AttributeError, OSError, ValueError):
        return
    try:
        os.dup2(devnull, fd)
    except OSError:
        pass
    finally:
        os.close(devnull)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a usage error already printed
        return int(exc.code or 0)
    real_stdout = sys.stdout
    if real_stdout is not None:
        sys.stdout = _GuardedStdout(real_stdout)  # type: ignore[assignment]
    try:
        code = int(args.handler(args) or 0)
        if real_stdout is not None:
            sys.stdout.flush()
        return code
    except _OutputError as exc:
        print(f"rwenas: error: {exc}", file=sys.stderr)
        _silence_stdout(real_stdout)
        return 2
    except RwenasError as exc:
        print(f"rwenas: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("rwenas: interrupted", file=sys.stderr)
        return 130
    finally:
        sys.stdout = real_stdout
