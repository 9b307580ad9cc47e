"""The `harness` command line.

Every ending is one line on stderr, never a traceback: user mistakes (HarnessInputError, a folder
that cannot be written, a problem too large for the memory) exit with status 2; failures mid-run
(numerical failure, divergence, a full disk, a closed pipe) with status 1; Ctrl-C, wherever it
comes (start-up, inside a solve, while figures are written), with 130 after saving what can be
resumed, and SIGTERM the same way with 143. Output goes through whatever encoding stdout and stderr
have (`PYTHONIOENCODING=ascii`, a C locale): characters it cannot encode are escaped, never fatal.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import os
import signal
import sys

from ._interrupts import (
    exit_status, forget_unhandled_interrupt, quiet_teardown, raise_if_interrupt, sigint_watched,
    sigterm_as_interrupt, signal_of,
)
from .errors import (
    BackendError, BackendUnavailableError, HarnessInputError, SolverError, TrainingDivergedError,
    UnstableBacksolveError,
)

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


def _julia_methods() -> tuple[str, ...]:
    """The sensealgs `--backend julia` takes: the Julia backend's own list (it names its engines)."""
    from .julia.names import ADJOINT_SENSEALGS

    return ADJOINT_SENSEALGS


def float_between(low: float, high: float, why: str):
    """An argparse type: a number in [low, high]; `why` says what the range keeps meaningful."""

    def parse(text: str) -> float:
        value = positive_float(text)
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{text!r}: expected a number in [{low:g}, {high:g}] ({why})")
        return value

    return parse


def folder_name(text: str) -> str:
    """An argparse type: a non-empty path (an empty one would silently mean the current folder)."""
    if not text.strip():
        raise argparse.ArgumentTypeError(f"{text!r}: expected a folder name")
    return text


# gradcheck's bound is GROWTH x tol (harness/gradcheck.py): beyond 1e-4 it allows errors of more than
# 10 %, which no longer tells a right gradient from a wrong one; below 1e-12 the solvers cannot go.
GRADCHECK_TOL_RANGE = (1e-12, 1e-4)



def _julia_engine(sensealg: str):
    """The Julia engine value for `--backend julia` (`resolve_engine("julia:<sensealg>")`)."""
    from .julia import julia_status
    from .sensitivity import resolve_engine

    if sensealg not in _julia_methods():
        raise HarnessInputError(f"--backend julia takes --engine one of {list(_julia_methods())}, not {sensealg!r}")
    status = julia_status()
    if not status.available:
        raise BackendUnavailableError(f"the Julia backend is unavailable: {status.reason}")
    return resolve_engine(f"julia:{sensealg}")


class _DeprecatedAlias(argparse.Action):
    """An older spelling of an option: works as the new one, with a one-line note on stderr."""

    def __init__(self, option_strings, dest, new: str, **kwargs):
        self.new = new
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        print(f"harness: {option_string} is deprecated; use {self.new}", file=sys.stderr)
        setattr(namespace, self.dest, values)


def cmd_reproduce(args) -> int:
    from .reproduce import reproduce

    engine = _julia_engine(args.engine) if args.backend == "julia" else args.engine
    reproduce(
        args.out, preset=args.preset, steps=args.steps, solver=args.solver,
        rtol=args.rtol, atol=args.atol, lr=args.lr, seed=args.seed, problem_file=args.problem_file,
        engine=engine, echo=_echo, augment=args.augment,
    )
    return 0


def _echo(line: str) -> None:
    """print, except that a reader closing the pipe (`harness reproduce | head -1`) does not stop
    the run: the rest of stdout is dropped, the outputs are still written, and `main` says so."""
    try:
        print(line, flush=True)
    except BrokenPipeError:
        _drop_stdout()


_stdout_dropped = False


def _drop_stdout() -> None:
    global _stdout_dropped
    _stdout_dropped = True
    # point fd 1 at /dev/null so that later prints, and the flush at exit, do not raise again
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def cmd_gradcheck(args) -> int:
    from .gradcheck import cases_to_json, format_case, run_gradcheck

    if args.problem_file is not None and args.batch is not None:
        raise HarnessInputError("--batch cannot be combined with --problem-file: the file fixes the batch")
    batch = 500 if args.batch is None else args.batch
    echo = None if args.json else (lambda case: _echo(format_case(case) + "\n"))
    backend = args.backend or ("python" if args.no_julia else "any")
    cases = run_gradcheck(tol=args.tol, batch=batch, problem_file=args.problem_file, augment=args.augment,
                          include_julia=backend != "python", require_julia=backend == "julia", progress=echo)
    report = cases_to_json(cases, args.tol)
    if args.json:
        from ._io import to_json

        print(to_json(report))
    else:
        bad = [e for e in report["engines"] if not e["ok"]]
        # a problem whose reference was refused (too large for the memory) was not checked: say so
        unchecked = [e["problem"] for e in report["engines"]
                     if e["status"] == "refused" and e["name"].endswith("(reference)")]
        tail = f"; not checked (reference refused, see its row): {', '.join(unchecked)}" if unchecked else ""
        print(("all engines within their bounds" if not bad else
               f"{len(bad)} engine(s) beyond their bounds: " + ", ".join(f"{e['name']} ({e['problem']})" for e in bad))
              + tail)
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
    from ._io import to_json

    print(to_json(report) if args.json else format_bench(report))
    return 0


def engine_rows() -> list[dict]:
    """Every registered engine: its name (or type), backend, solver names and availability here.

    The optional backends (Julia, the PyTorch/JAX peers) are imported first so that their engine
    types are registered; importing them does not start Julia nor import torch or jax.
    """
    from .sensitivity import registered_engines

    for module_name in ("harness.julia", "harness.peers.common"):
        try:
            importlib.import_module(module_name)
        except ImportError as err:
            raise_if_interrupt(err)
    rows = []
    for declaration in registered_engines():
        available, reason = declaration.availability()
        rows.append({
            "name": declaration.name or declaration.engine_type.__qualname__,
            "by_name": declaration.name is not None,
            "backend": declaration.backend,
            "solvers": "harness" if declaration.uses_harness_solvers else "own",
            "available": bool(available),
            "reason": reason,
        })
    return rows


def cmd_engines(args) -> int:
    rows = engine_rows()
    if args.json:
        from ._io import to_json

        print(to_json({"engines": rows}))
        return 0
    print(f"{'engine':28s} {'backend':12s} {'solvers':8s} available")
    for row in rows:
        status = "yes" if row["available"] else f"no: {row['reason']}"
        name = row["name"] if row["by_name"] else f"({row['name']})"
        print(f"{name:28s} {row['backend']:12s} {row['solvers']:8s} {status}")
    print("Engines in parentheses are built with arguments (Python API, compare specs), not by name.")
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
                        "tutorial's own draws: its table row for row); see docs/tutorial.md")
    p.add_argument("--steps", type=nonnegative_int, help="Adam steps (preset: 1000)")
    p.add_argument("--method", dest="engine", action=_DeprecatedAlias, new="--engine", default=argparse.SUPPRESS,
                   help=argparse.SUPPRESS)
    p.add_argument("--engine", dest="engine", metavar="ENGINE", default="BacksolveAdjoint",
                   help=f"gradient engine (--method, deprecated, is the older spelling), one of {sorted(ENGINES)}, "
                        "or with --backend julia one of "
                        f"{list(_julia_methods())} (default BacksolveAdjoint, the tutorial's method; its "
                        "reconstruction check refuses problems where it would be unreliable)")
    p.add_argument("--solver", help=f"forward solver, one of {sorted(SOLVERS)} (preset: DP5; tutorial-exact: DP8)")
    p.add_argument("--rtol", type=positive_float, help="relative tolerance (preset: 1e-6)")
    p.add_argument("--atol", type=positive_float, help="absolute tolerance (preset: 1e-4)")
    p.add_argument("--lr", type=positive_float, help="Adam learning rate (preset: 1e-2)")
    p.add_argument("--seed", type=nonnegative_int, default=0)
    p.add_argument("--out", type=folder_name, default="runs/seed",
                   help="output folder (default runs/seed, which git ignores)")
    p.add_argument("--problem-file", help="a problem .npz (see harness/problems/_file.py) instead of the seed problem")
    p.add_argument("--augment", type=nonnegative_int, default=0, metavar="A",
                   help="fit the data with A augmented dimensions, started at 0 (an augmented Neural ODE)")
    p.add_argument("--backend", default="python", choices=("python", "julia"))
    p.set_defaults(func=cmd_reproduce)

    p = sub.add_parser("gradcheck", help="every engine against a tight ForwardSensitivity reference")
    p.add_argument("--tol", type=float_between(*GRADCHECK_TOL_RANGE, "where the bound 1e3 x tol still "
                                                "separates right from wrong gradients"),
                   default=1e-8, help="rtol = atol of the engines (default 1e-8; at most 1e-4)")
    p.add_argument("--batch", type=int_at_least(1), default=None,
                   help="initial states per built-in problem (default 500; not with --problem-file)")
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
    p.add_argument("--repeats", type=int_at_least(1), default=30)
    p.add_argument("--rtol", type=positive_float, default=1e-4)
    p.add_argument("--atol", type=positive_float, default=1e-4)
    p.add_argument("--no-stiff", action="store_true", help="skip the stiff-variant rows")
    p.add_argument("--backend", default="python", choices=("python", "julia"))
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("engines", help="list the registered gradient engines and whether each can run here")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_engines)

    for module_name in PLUGINS:
        try:
            module = importlib.import_module(module_name)
        except ImportError as err:
            raise_if_interrupt(err)  # an interrupted import is Ctrl-C, not an absent plugin
            continue
        module.register(sub)
    return parser


# Only the fault-injection tests set this: main creates the named file as it starts, before the heavy
# imports, so that a test can interrupt it during start-up without guessing with sleeps.
STARTED_ENV = "HARNESS_TEST_STARTED_FILE"

# `harness compare` finished, but a declared claim of the experiment failed: a finding scripts can gate on
CLAIM_FAILED = 3

# commands whose finished work is kept in the output folder, so that the same command resumes
RESUMABLE = {"reproduce", "compare"}


def main(argv=None) -> int:
    """The console entry point: runs a command and turns every way it can end into an exit status.

    Exit statuses: 0 done; 1 a failure while running (numerical, backend, I/O, memory, a closed
    pipe); 2 bad input (a usage mistake, an invalid file, an unavailable backend); 3 `harness compare`
    ran to the end and wrote its report, but a claim the experiment declares does not hold
    (`CLAIM_FAILED`); 130 interrupted (Ctrl-C); 143 terminated (SIGTERM).
    """
    global _stdout_dropped
    _stdout_dropped = False
    name, command = "harness", None
    _tolerate_any_encoding()
    _drop_unusable_plot_backend()
    try:
        # SIGTERM raises as Ctrl-C does; errors either caused are known as the interrupt they are
        with sigterm_as_interrupt(), sigint_watched():
            try:
                started_file = os.environ.get(STARTED_ENV)
                if started_file:
                    open(started_file, "w").close()
                from .sensitivity import load_engine_plugins

                load_engine_plugins()  # before the parser: its help lists the engines by name
                parser = build_parser()  # the heavy imports happen here, inside the handling below
                args = parser.parse_args(argv)
                command = args.command
                name = f"harness {command}"
                code = args.func(args)
                if _stdout_dropped:
                    print(f"{name}: stdout was closed before the end (a pipe whose reader exited); every output "
                          "file was written", file=sys.stderr)
                    return 1
                return code
            except Exception as err:
                raise_if_interrupt(err)  # an error made of Ctrl-C (see `_interrupts`) ends as Ctrl-C
                raise
    except KeyboardInterrupt as err:
        hint = "; run the same command again to resume" if command in RESUMABLE else ""
        what = "terminated (SIGTERM)" if signal_of(err) == signal.SIGTERM else "interrupted"
        _say(f"{name}: {what}{hint}")
        quiet_teardown()  # the line above stays the only one (see `_interrupts.quiet_teardown`)
        return exit_status(err)
    except HarnessInputError as err:
        _say(f"{name}: error: {err}")
        return 2
    except BackendUnavailableError as err:
        _say(f"{name}: {err}")
        return 2
    except TrainingDivergedError as err:
        _say(f"{name}: {err}")
        return 1
    except BackendError as err:
        _say(f"{name}: backend error: {err}")
        return 1
    except (SolverError, UnstableBacksolveError) as err:
        _say(f"{name}: numerical failure: {err}")
        return 1
    except BrokenPipeError:
        _drop_stdout()
        _say(f"{name}: stdout was closed (a pipe whose reader exited); stopped")
        return 1
    except MemoryError:
        _say(f"{name}: ran out of memory; try a smaller batch or problem")
        return 1
    except OSError as err:
        where = f" {err.filename}" if err.filename else " its output"
        hint = ""
        if err.errno == errno.ENOSPC:  # only a command that keeps its finished work resumes
            hint = ("; free some space and run the same command again to resume" if command in RESUMABLE
                    else "; free some space and run the command again")
        _say(f"{name}: could not write{where}: {err.strerror or err}{hint}")
        return 1
    finally:
        # The status returned here is the process's: under `python -m`, a Ctrl-C that left a string
        # exec (a dataclass being defined by an import) would make it "killed by SIGINT" instead.
        forget_unhandled_interrupt()


def _tolerate_any_encoding() -> None:
    """Let stdout and stderr escape what their encoding cannot encode (θ, ≤, ² under ascii) instead
    of raising UnicodeEncodeError in the middle of a run."""
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure") and getattr(stream, "errors", None) == "strict":
            try:
                stream.reconfigure(errors="backslashreplace")
            except (ValueError, OSError):  # a detached or closed stream: nothing to print to anyway
                pass


# Backends matplotlib accepts without importing it to ask (the harness itself always draws with Agg).
_KNOWN_BACKENDS = {"agg", "cairo", "pdf", "pgf", "ps", "svg", "template"}


def _drop_unusable_plot_backend() -> None:
    """An invalid MPLBACKEND makes `import matplotlib` raise, in this process and in every worker it
    starts. The harness draws its figures to files with Agg whatever MPLBACKEND says, so an invalid
    value is removed from the environment, with one line saying so."""
    value = os.environ.get("MPLBACKEND")
    if value is None or value.lower() in _KNOWN_BACKENDS or value.startswith("module://"):
        return
    del os.environ["MPLBACKEND"]
    try:
        from matplotlib import rcsetup

        rcsetup.validate_backend(value)
    except ImportError:
        return  # no matplotlib: nothing to protect
    except ValueError:
        _say(f"harness: MPLBACKEND={value!r} is not a matplotlib backend; ignored (figures are drawn with Agg)")
        return
    os.environ["MPLBACKEND"] = value  # valid: the user's, kept for whatever else reads it


def _say(line: str) -> None:
    """One line on stderr; a closed stderr is ignored (there is nobody left to tell)."""
    try:
        print(line, file=sys.stderr, flush=True)
    except OSError:
        pass


if __name__ == "__main__":
    sys.exit(main())
