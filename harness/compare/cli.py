"""The `harness compare EXPERIMENT.toml [--out DIR]` subcommand (registered by harness.cli)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import HarnessInputError


def _steps(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r}: expected an integer >= 0")
    return value


QUICK_STEPS = 20  # --quick: enough steps to see the loss curves separate or not, in seconds


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "compare",
        help="run a comparison experiment (TOML) and write report.md, results.json and figures",
        description="Cross-validate gradient engines on one problem: errors against a reference, "
        "work-precision, memory and training, as described by an experiment file (see experiments/).",
    )
    p.add_argument("experiment", help="experiment file (.toml)")
    p.add_argument("--out", default=None,
                   help="output folder (default: out/compare/<experiment name>); finished cells in "
                   "it are reused")
    length = p.add_mutually_exclusive_group()
    length.add_argument("--steps", type=_steps, default=None,
                        help="training steps per engine (overrides the experiment's [training] steps)")
    length.add_argument("--quick", action="store_true",
                        help=f"shorten the training comparison to {QUICK_STEPS} steps")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress bar (default: when stderr is a terminal)")
    p.set_defaults(func=cmd_compare)


def cmd_compare(args) -> int:
    from .experiment import run_experiment

    path = Path(args.experiment)
    if path.suffix != ".toml":
        raise HarnessInputError(f"experiment {str(path)!r}: expected a .toml file")
    out = Path(args.out) if args.out else Path("out") / "compare" / path.stem
    steps = QUICK_STEPS if args.quick else args.steps
    results = run_experiment(path, out, progress=args.progress, training_steps=steps)
    for line in results["summary"]:
        print(f"- {line.replace('**', '')}")
    print(f"report: {out / 'report.md'}")
    return 0
