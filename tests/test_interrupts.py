"""Ctrl-C ends every command with one line and exit status 130, however the interrupt surfaces.

The end-to-end tests run the real command line with `python -m`, in a subprocess, through a small
module that adds subcommands (the way `harness.compare.cli` adds its own) in which a real SIGINT is
raised at a chosen point with `signal.raise_signal`: no sleeps, no race. Each point is one way an
interrupt was seen to go wrong in the fault-injection runs:

- inside a string `exec` (where `dataclasses` builds a dataclass's methods while an import runs):
  CPython then marked the interrupt as unhandled and, under `python -m`, killed the process with
  SIGINT after `main` had printed its line and returned 130 (exit status -2);
- inside an extension module's initialisation, which pybind11 reports as
  ImportError("initialization failed") raised from the KeyboardInterrupt (matplotlib's Agg
  backend): a traceback and exit status 1 instead of "interrupted";
- the same with the interrupt replaced, not chained (numpy's C core import);
- inside a weakref callback (importlib's module locks have them), where Python cannot raise: it
  printed "Exception ignored" and the command ran on to the end, exit status 0;
- inside an import that left half-built objects, whose `__del__` printed a traceback at exit;
- inside an engine's compute, wrapped the same way, during `harness compare`: the cell was stored
  as "failed" and the grid went on.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from harness._interrupts import interrupt_in, is_interrupt, raise_if_interrupt, sigint_watched

# The module `python -m` runs: the real command line with three subcommands and one engine more.
HARNESS_WITH_INTERRUPTS = '''
import os
import signal
import sys
import time
import weakref
from dataclasses import dataclass, replace

import harness
from harness import cli


def ctrl_c():
    # a real signal (SIGINT, or SIGTERM where SIGNAL says so), through the handlers the command line set
    signal.raise_signal(getattr(signal, os.environ.get("SIGNAL", "SIGINT")))


def in_string_exec(args):
    # as `dataclasses._create_fn` does while an import defines a dataclass
    exec("ctrl_c()", {"ctrl_c": ctrl_c})
    return 0


def chained_by_an_extension(args):
    try:  # as pybind11 reports Ctrl-C during an extension module's initialisation
        ctrl_c()
    except KeyboardInterrupt as err:
        raise ImportError("initialization failed") from err
    return 0


def replaced_by_an_extension(args):
    interrupted = False
    try:  # as numpy's C core import does: the interrupt is replaced, not chained
        ctrl_c()
    except KeyboardInterrupt:
        interrupted = True
    if interrupted:
        raise ImportError('PyCapsule_Import could not import module "datetime"')
    return 0


def in_a_weakref_callback(args):
    class ModuleLock:
        pass

    lock = ModuleLock()
    ref = weakref.ref(lock, lambda ref: ctrl_c())  # as importlib's module locks have
    del lock  # the callback runs here, and Python cannot raise from it
    for _ in range(1000):  # 10 s of work the interrupt must stop
        time.sleep(0.01)
    return 0 if ref() is None else 1


class HalfBuilt:
    def __del__(self):
        self.expr  # never set: its __init__ did not run


LEFT_BEHIND = []


def leaving_half_built_objects(args):
    LEFT_BEHIND.append(HalfBuilt.__new__(HalfBuilt))  # as an import cut short leaves them
    ctrl_c()
    return 0


def register(subparsers):
    for name, func in [("in-string-exec", in_string_exec), ("chained", chained_by_an_extension),
                       ("replaced", replaced_by_an_extension), ("in-weakref-callback", in_a_weakref_callback),
                       ("half-built", leaving_half_built_objects)]:
        subparsers.add_parser(name).set_defaults(func=func)


@dataclass(frozen=True)
class InterruptedWhileLoading:
    """QuadratureAdjoint, except that with INTERRUPT_ENGINE set, Ctrl-C comes as it loads a
    (pretend) compiled extension and surfaces as pybind11 reports it."""

    name = "InterruptedWhileLoading"

    def compute(self, problem, theta, options):
        if os.environ.get("INTERRUPT_ENGINE"):
            chained_by_an_extension(None)
        result = harness.gradient(problem, theta, engine=harness.QuadratureAdjoint(),
                                  solver=options.solver, rtol=options.rtol, atol=options.atol)
        return replace(result, engine=self.name)


harness.register_engine(InterruptedWhileLoading, backend="user-test")
cli.PLUGINS = (*cli.PLUGINS, "__main__")
sys.exit(cli.main(sys.argv[1:]))
'''

EXPERIMENT = """
title = "interrupted engine"

[problem]
name = "seed"
batch = 4

[grid]
engines = ["QuadratureAdjoint", "InterruptedWhileLoading"]
solvers = ["DP5"]
tolerances = [1e-6]
memory = false

[reference]
engine = "ForwardSensitivity"
rtol = 1e-10
atol = 1e-10
check_engine = "none"
"""


def with_ctrl_c():
    """preexec_fn of a child that must stop on SIGINT: SIGINT's default action, whatever the suite's
    (a suite started with `nohup ... &` ignores SIGINT, and children inherit that)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _harness(tmp_path: Path, *args, env=None) -> subprocess.CompletedProcess:
    (tmp_path / "harness_with_interrupts.py").write_text(HARNESS_WITH_INTERRUPTS)
    return subprocess.run(
        [sys.executable, "-m", "harness_with_interrupts", *map(str, args)], cwd=tmp_path,
        capture_output=True, text=True, timeout=600, env={**os.environ, **(env or {})},
        preexec_fn=with_ctrl_c,
    )


@pytest.mark.parametrize("command", ["in-string-exec", "chained", "replaced", "in-weakref-callback", "half-built"])
def test_ctrl_c_ends_with_one_line_and_status_130(tmp_path, command):
    done = _harness(tmp_path, command)
    # before the fix: in-string-exec -2 ("killed by SIGINT", after the line); chained and replaced
    # 1 with a traceback; in-weakref-callback "Exception ignored ... KeyboardInterrupt" and 0 after
    # the 10 s of work; half-built its line, then "Exception ignored in ... __del__" at exit
    assert done.returncode == 130, done.stderr
    assert done.stderr == f"harness {command}: interrupted\n"


@pytest.mark.parametrize("command", ["in-string-exec", "chained", "replaced", "in-weakref-callback", "half-built"])
def test_sigterm_ends_like_ctrl_c_with_its_own_status(tmp_path, command):
    """SIGTERM, however it surfaces (the same five disguises), ends as Ctrl-C does, with one line
    and 143. Before: no handler, so the process died at once with no message and nothing saved."""
    done = _harness(tmp_path, command, env={"SIGNAL": "SIGTERM"})
    assert done.returncode == 143, done.stderr
    assert done.stderr == f"harness {command}: terminated (SIGTERM)\n"


@pytest.mark.slow
def test_an_interrupted_cell_is_not_stored_and_the_rerun_computes_it(tmp_path):
    experiment = tmp_path / "interrupted.toml"
    experiment.write_text(EXPERIMENT)
    out = tmp_path / "out"
    done = _harness(tmp_path, "compare", experiment, "--out", out, env={"INTERRUPT_ENGINE": "1"})
    assert done.returncode == 130, done.stderr
    assert done.stderr == "harness compare: interrupted; run the same command again to resume\n"
    stored = [json.loads(p.read_text()) for p in (out / "cells").glob("*.json")]
    # the cells before it are kept (the reference and QuadratureAdjoint's); the interrupted one is not
    assert all(record["status"] == "ok" for record in stored), stored
    assert "InterruptedWhileLoading" not in {record["spec"]["engine"]["name"] for record in stored}

    done = _harness(tmp_path, "compare", experiment, "--out", out)
    assert done.returncode == 0, done.stderr
    rows = {row["engine"]: row for row in json.loads((out / "results.json").read_text())["rows"]}
    assert rows["InterruptedWhileLoading"]["status"] == "ok"
    # the same computation as QuadratureAdjoint's row: the same numbers to the last bit
    assert rows["InterruptedWhileLoading"]["dtheta"] == rows["QuadratureAdjoint"]["dtheta"]


# -- the pieces --------------------------------------------------------------------------------


def _raised(make):
    try:
        make()
    except BaseException as err:  # noqa: B036 - the test inspects whatever was raised
        return err
    raise AssertionError("nothing was raised")


def test_an_interrupt_is_found_through_causes_and_contexts():
    def context_twice_removed():
        try:
            _chained_import_error()
        except ImportError:
            raise RuntimeError("while handling it") from None  # `from None` keeps the context

    assert isinstance(interrupt_in(_raised(_chained_import_error)), KeyboardInterrupt)
    assert isinstance(interrupt_in(_raised(context_twice_removed)), KeyboardInterrupt)
    assert interrupt_in(_raised(lambda: int("x"))) is None


def test_control_flow_is_never_an_interrupt():
    def exit_while_interrupted():
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt:
            sys.exit(2)

    assert interrupt_in(_raised(exit_while_interrupted)) is None
    assert not is_interrupt(_raised(exit_while_interrupted))


def test_a_chain_that_loops_ends():
    err = ValueError("a")
    other = ValueError("b")
    err.__context__, other.__context__ = other, err
    assert interrupt_in(err) is None


def _chained_import_error():
    try:
        raise KeyboardInterrupt
    except KeyboardInterrupt as err:
        raise ImportError("initialization failed") from err


def test_raise_if_interrupt_passes_other_errors_through():
    raise_if_interrupt(ValueError("an engine's own failure"))  # returns: a finding, not Ctrl-C
    with pytest.raises(KeyboardInterrupt):
        raise_if_interrupt(_raised(_chained_import_error))


def test_after_sigint_any_error_is_the_interrupt_and_the_watch_leaves_no_trace(ctrl_c_handler):
    before = signal.getsignal(signal.SIGINT)
    error = ValueError("raised after Ctrl-C, holding no trace of it")
    with sigint_watched():
        assert not is_interrupt(error)
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGINT)
        assert is_interrupt(error)
    assert not is_interrupt(error)
    assert signal.getsignal(signal.SIGINT) is before


def test_an_ignored_sigint_stays_ignored():
    before = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with sigint_watched():
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
            signal.raise_signal(signal.SIGINT)  # ignored: nothing is raised, nothing is noted
        assert not is_interrupt(ValueError())
    finally:
        signal.signal(signal.SIGINT, before)


def test_a_sigterm_leaves_no_trace_once_its_block_ends(ctrl_c_handler):
    """After a SIGTERM was handled, a later error in the same process is no interrupt, even where
    SIGINT is ignored (a suite started with `nohup ... &`, where `sigint_watched` runs unwatched)."""
    from harness._interrupts import Terminated, sigterm_as_interrupt

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with pytest.raises(Terminated):
        with sigterm_as_interrupt(), sigint_watched():
            signal.raise_signal(signal.SIGTERM)
    assert not is_interrupt(RuntimeError("Factor is exactly singular"))
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
