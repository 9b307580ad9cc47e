"""The `harness` command line.

User mistakes (HarnessInputError) print one line and exit with status 2; numerical failures print one
line and exit with status 1; Ctrl-C exits with 130 after saving what can be resumed.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from .errors import BackendError, BackendUnavailableError, HarnessInputError, SolverError, UnstableBacksolveError
from ._io import to_json

# Subcommands contributed by other parts of the package: module -> register(subparsers).
PLUGINS = ("harness.julia.cli", "harness.compare.cli")


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line (not the whole usage block), exit status 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0 or value != value or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r}: expected a finite number > 0")
    return value


def int_at_least(minimum: int):
    """An argparse type: an integer >= minimum, with a one-line message otherwise."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{text!r}: expected an integer >= {minimum}")
        return value

    return parse


nonnegative_int = int_at_least(0)


JULIA_METHODS = ("BacksolveAdjoint", "InterpolatingAdjoint", "QuadratureAdjoint", "GaussAdjoint")


def _julia_engine(method: str):
    """The Julia engine value for `--backend julia` (the Julia backend names its own engines)."""
    from .julia import JuliaAdjoint, julia_status

    if method not in JULIA_METHODS:
        raise HarnessInputError(f"--backend julia takes --method one of {list(JULIA_METHODS)}, not {method!r}")
    status = julia_status()
    if not status.available:
        raise BackendUnavailableError(f"the Julia backend is unavailable: {status.reason}")
    return JuliaAdjoint(sensealg=method, route="python_vjp")


def cmd_reproduce(args) -> int:
    from .reproduce import reproduce

    engine = _julia_engine(args.method) if args.backend == "julia" else None
    reproduce(
        args.out, preset=args.preset, steps=args.steps, method=args.method, solver=args.solver,
        rtol=args.rtol, atol=args.atol, lr=args.lr, seed=args.seed, problem_file=args.problem_file,
        engine=engine, augment=args.augment,
    )
    return 0


def cmd_gradcheck(args) -> int:
    from .gradcheck import cases_to_json, format_case, run_gradcheck

    echo = None if args.json else (lambda case: print(format_case(case) + "\n", flush=True))
    backend = args.backend or ("python" if args.no_julia else "any")
    cases = run_gradcheck(tol=args.tol, batch=args.batch, problem_file=args.problem_file, augment=args.augment,
                          include_julia=backend != "python", require_julia=backend == "julia", progress=echo)
    report = cases_to_json(cases, args.tol)
    if args.json:
        print(to_json(report))
    else:
        bad = [e for e in report["engines"] if not e["ok"]]
        print("all engines within their bounds" if not bad else
              f"{len(bad)} engine(s) beyond their bounds: " + ", ".join(f"{e['name']} ({e['problem']})" for e in bad))
    return 0 if report["ok"] else 1


def cmd_bench(args) -> int:
    from .bench import format_bench, run_bench

    extra = []
    if args.backend == "julia":
        from .julia import julia_engines

        _julia_engine("GaussAdjoint")
        extra = list(julia_engines(reference=False))
    report = run_bench(repeats=args.repeats, rtol=args.rtol, atol=args.atol,
                       include_stiff=not args.no_stiff, extra_engines=extra)
    print(to_json(report) if args.json else format_bench(report))
    return 0


def build_parser() -> argparse.ArgumentParser:
    from .reproduce import PRESETS
    from .sensitivity import ENGINES
    from .solvers import SOLVERS

    parser = _Parser(
        prog="harness",
        description="Neural ODEs with adjoint gradients: reproduce the tutorial, check and time gradients.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("reproduce", help="the tutorial end to end, with a report")
    p.add_argument("--preset", default="tutorial", choices=sorted(PRESETS),
                   help="tutorial (default), close-fit (longer, tighter) or tutorial-exact (the "
                        "tutorial's own draws: its table row for row); see README")
    p.add_argument("--steps", type=nonnegative_int, help="Adam steps (preset: 1000)")
    p.add_argument("--method", default="BacksolveAdjoint",
                   help=f"gradient engine, one of {sorted(ENGINES)}, or with --backend julia one of "
                        f"{list(JULIA_METHODS)} (default BacksolveAdjoint, the tutorial's method; its "
                        "reconstruction check refuses problems where it would be unreliable)")
    p.add_argument("--solver", help=f"forward solver, one of {sorted(SOLVERS)} (preset: DP5; tutorial-exact: DP8)")
    p.add_argument("--rtol", type=positive_float, help="relative tolerance (preset: 1e-6)")
    p.add_argument("--atol", type=positive_float, help="absolute tolerance (preset: 1e-4)")
    p.add_argument("--lr", type=positive_float, help="Adam learning rate (preset: 1e-2)")
    p.add_argument("--seed", type=nonnegative_int, default=0)
    p.add_argument("--out", default="reports/seed", help="output folder (default reports/seed)")
    p.add_argument("--problem-file", help="a problem .npz (see harness/problems/_file.py) instead of the seed problem")
    p.add_argument("--augment", type=nonnegative_int, default=0, metavar="A",
                   help="fit the data with A augmented dimensions, started at 0 (an augmented Neural ODE)")
    p.add_argument("--backend", default="python", choices=("python", "julia"))
    p.set_defaults(func=cmd_reproduce)

    p = sub.add_parser("gradcheck", help="every engine against a tight ForwardSensitivity reference")
    p.add_argument("--tol", type=positive_float, default=1e-8, help="rtol = atol of the engines (default 1e-8)")
    p.add_argument("--batch", type=nonnegative_int, default=500)
    p.add_argument("--problem-file", help="check this problem instead of the built-in three")
    p.add_argument("--augment", type=nonnegative_int, default=0, metavar="A",
                   help="check every problem with A augmented dimensions added (default 0)")
    p.add_argument("--no-julia", action="store_true", help="leave out the Julia rows (= --backend python)")
    p.add_argument("--backend", choices=("python", "julia"),
                   help="python: Python engines only; julia: also the Julia engines, exit 2 if Julia is "
                        "unavailable (default: the Julia rows where Julia is available, else one row saying why)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_gradcheck)

    p = sub.add_parser("bench", help="time one gradient per engine against a plain scipy baseline")
    p.add_argument("--repeats", type=nonnegative_int, default=30)
    p.add_argument("--rtol", type=positive_float, default=1e-4)
    p.add_argument("--atol", type=positive_float, default=1e-4)
    p.add_argument("--no-stiff", action="store_true", help="skip the stiff-variant rows")
    p.add_argument("--backend", default="python", choices=("python", "julia"))
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_bench)

    for module_name in PLUGINS:
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        module.register(sub)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except HarnessInputError as err:
        print(f"harness {args.command}: error: {err}", file=sys.stderr)
        return 2
    except BackendUnavailableError as err:
        print(f"harness {args.command}: {err}", file=sys.stderr)
        return 2
    except (SolverError, UnstableBacksolveError) as err:
        print(f"harness {args.command}: numerical failure: {err}", file=sys.stderr)
        return 1
    except BackendError as err:
        print(f"harness {args.command}: backend error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"harness {args.command}: interrupted; run the same command again to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
