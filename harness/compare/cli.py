"""The `harness compare EXPERIMENT.toml [--out DIR]` subcommand (registered by harness.cli)."""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

from ..cli import int_at_least
from ..errors import HarnessInputError


QUICK_STEPS = 20  # --quick: enough steps to see the loss curves separate or not, in seconds


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "compare",
        help="run a comparison experiment (TOML) and write report.md, results.json and figures",
        description="Cross-validate gradient engines on one problem: errors against a reference, "
        "work-precision, memory and training, as described by an experiment file (see experiments/). "
        "The file's [[claims]] are checked against the results: exit status 3 when the report was "
        "written but a declared claim does not hold (2: bad input, 1: a failure while running).",
    )
    p.add_argument("experiment", help="experiment file (.toml)")
    p.add_argument("--out", default=None,
                   help="output folder; finished cells in it are reused (default: for a file in a folder "
                   "named experiments/, reports/compare/<name> beside that folder; for any other file, "
                   "<name>-report/ beside the file)")
    p.add_argument("--max-cells", type=int_at_least(1), default=None, metavar="N",
                   help="refuse a grid of more than N cells before anything runs (default 5000)")
    length = p.add_mutually_exclusive_group()
    length.add_argument("--steps", type=int_at_least(0), default=None,
                        help="training steps per engine (overrides the experiment's [training] steps)")
    length.add_argument("--quick", action="store_true",
                        help=f"shorten the training comparison to {QUICK_STEPS} steps")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress bar (default: when stderr is a terminal)")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--workers", type=int_at_least(1), default=1, metavar="N",
                       help="run cells in parallel on a local Dask cluster of N worker processes "
                       "(needs the dask extra; default 1: in this process)")
    where.add_argument("--scheduler", default=None, metavar="ADDRESS",
                       help="run cells on a running Dask cluster, e.g. tcp://host:8786 (needs the "
                       "dask extra; its workers need this harness installed)")
    p.set_defaults(func=cmd_compare)


def _executor(workers: int, scheduler: str | None):
    """None (in-process) for one worker and no scheduler; otherwise a DaskExecutor."""
    if scheduler is None and workers == 1:
        return None
    option = f"--scheduler {scheduler}" if scheduler is not None else f"--workers {workers}"
    if importlib.util.find_spec("distributed") is None:
        raise HarnessInputError(f'{option} needs Dask, which is not installed: pip install -e ".[dask]"')
    from ._dask import DaskExecutor

    if scheduler is not None:
        return DaskExecutor(scheduler=scheduler)
    return DaskExecutor(workers=workers)


def default_out(path: Path) -> Path:
    """Where a report goes without --out: the shipped layout for a file in an `experiments/` folder
    (`reports/compare/<name>` beside that folder), and beside the file for any other, so that an
    experiment of one's own never writes into a project's tracked `reports/`."""
    if path.resolve().parent.name == "experiments":
        return path.parent.parent / "reports" / "compare" / path.stem
    return path.parent / f"{path.stem}-report"


def cmd_compare(args) -> int:
    from .. import cli as harness_cli
    from ._experiment import MAX_CELLS, run_experiment
    from .spec import load_experiment

    path = Path(args.experiment)
    if path.suffix != ".toml":
        raise HarnessInputError(f"experiment {str(path)!r}: expected a .toml file")
    out = Path(args.out) if args.out else default_out(path)
    steps = QUICK_STEPS if args.quick else args.steps
    experiment = load_experiment(path)  # a mistake in the file is reported before a cluster starts
    executor = _executor(args.workers, args.scheduler)
    try:
        results = run_experiment(experiment, out, progress=args.progress, training_steps=steps,
                                 executor=executor, max_cells=args.max_cells or MAX_CELLS)
    finally:
        if executor is not None:
            executor.close()
    from ..cli import CLAIM_FAILED
    from ._claims import ClaimResult, failed_first

    claims = failed_first([ClaimResult(**c) for c in results["claims"]])
    # stdout is a summary of what is on disk: a reader that stops early (`| head -1`) loses the rest
    # of it, not the run, so the exit status stays the run's own (0, or 3 for a claim that fails),
    # the status a script gates on; one line on stderr says that stdout was cut.
    for line in [f"- {line.replace('**', '')}" for line in results["summary"]] + [c.line() for c in claims]:
        harness_cli._echo(line)
    harness_cli._echo(f"report: {out / 'report.md'}")
    if harness_cli._stdout_dropped:
        harness_cli._stdout_dropped = False
        print("harness compare: stdout was closed before the end (a pipe whose reader exited); the report "
              "was written and the exit status is the run's own", file=sys.stderr)
    failed = [c for c in claims if not c.holds]
    if failed:
        print(f"harness compare: {len(failed)} of {len(claims)} declared claims do not hold "
              f"(exit status {CLAIM_FAILED})", file=sys.stderr)
        return CLAIM_FAILED
    return 0
