"""``rwenas report``: the HTML report of a run."""

from __future__ import annotations

import argparse

from rwenas.cli.args import add_trust_arg


def cmd_report(args: argparse.Namespace) -> int:
    from rwenas.report.html import write_report

    print(write_report(args.run_dir, args.out, picks=args.pick or (), space=args.space,
                       trust_plugins=args.trust_plugins))
    return 0


def add_report(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="rebuild a run's self-contained HTML report from run.db")
    p.add_argument("run_dir", metavar="RUN_DIR", help="run directory (holds run.db)")
    p.add_argument("--out", metavar="FILE.html", help="default: RUN_DIR/report.html")
    p.add_argument("--space", help="the run's plugin space package.module:Class, to confirm "
                                   "that it may be imported")
    add_trust_arg(p)
    p.add_argument("--pick", action="append", metavar="BUDGET",
                   help="also show the lowest-error member within a budget, e.g. "
                        "'madds<=10' (repeatable; L, M, S and the knee are always shown)")
    p.set_defaults(handler=cmd_report)
