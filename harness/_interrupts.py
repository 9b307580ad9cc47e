"""Ctrl-C as the harness sees it: which exceptions are interrupts, and how a process ends after one.

An interrupt does not always arrive as a KeyboardInterrupt. Python raises it wherever the main
thread happens to be when SIGINT comes, and some code there turns it into another error: a compiled
extension built with pybind11 (matplotlib's Agg backend is one) that is interrupted while it
initialises raises ImportError("initialization failed") from the KeyboardInterrupt, and numpy
interrupted while it imports its C core raises an ImportError that no longer holds the interrupt at
all (the C code replaced it). So the question "was this Ctrl-C?" is answered twice: by the error's
`__cause__`/`__context__` chain, and, in the command line, by whether SIGINT arrived while the
command ran (`sigint_watched` records it). Every place that turns errors into findings (`except
Exception` around an engine, `except ImportError` around an optional backend) lets such an error
through as the interrupt it is (`raise_if_interrupt`), and the command line reports it as one;
otherwise Ctrl-C becomes a failed cell stored as a result, a missing subcommand or a traceback.

Ending after one: CPython (3.8 and later; seen here on 3.11) marks a KeyboardInterrupt that leaves a
string `exec` or `eval` as unhandled, even when a caller catches it afterwards, and under
`python -m` the interpreter checks that mark after the program has returned and, if it is set,
kills itself with SIGINT, so that the status the program chose (130) becomes "killed by signal 2".
`dataclasses` and `namedtuple` build their methods with string `exec`, so Ctrl-C during an import
that defines one sets the mark. Every string `exec` clears the mark as it starts:
`forget_unhandled_interrupt` runs an empty one once the interrupt has been handled.

SIGTERM (`kill`, a batch scheduler's pre-emption, `timeout`) is handled as Ctrl-C is: inside
`sigterm_as_interrupt` it raises `Terminated`, a KeyboardInterrupt, so that every place that saves a
checkpoint or stores finished cells on Ctrl-C does so on SIGTERM too, and the command line ends with
one line and SIGTERM's own exit status, 143 (`exit_status`).
"""

from __future__ import annotations

import _thread
import atexit
import contextlib
import signal
import sys
import threading

# Set by the handler `sigint_watched` installs (SIGINT) and by `sigterm_as_interrupt`'s (SIGTERM):
# an interrupt arrived inside the watched block.
_sigint_received = threading.Event()
# Which signal set it last: SIGTERM must end as SIGTERM even when it surfaces disguised.
_last_signal = signal.SIGINT

# The exit status of a command ended by each signal: 128 + the signal's number, as a shell reports a
# process killed by it, but reached after the command has saved what it can and said so.
EXIT_STATUS = {signal.SIGINT: 130, signal.SIGTERM: 143}


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the main thread is (see `sigterm_as_interrupt`).

    A KeyboardInterrupt, so that every handler written for Ctrl-C (save the checkpoint, keep the
    finished cells, cancel the rest) handles it the same way.
    """

    signum = signal.SIGTERM

# An interrupt dropped where Python cannot raise is tripped again after this long: time for the
# place that dropped it to return, far below the second within which Ctrl-C must stop a command.
REDELIVERY_SECONDS = 0.05


def interrupt_in(err: BaseException) -> KeyboardInterrupt | None:
    """The KeyboardInterrupt that `err` is, or that caused it (its `__cause__`/`__context__` chain).

    None when no interrupt is among them. SystemExit and GeneratorExit are control flow, not errors
    made of an interrupt: they are never counted as one.
    """
    seen = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, KeyboardInterrupt):
            return err
        if not isinstance(err, Exception):
            return None
        seen.add(id(err))  # a chain can loop (an exception re-raised as its own context)
        err = err.__cause__ if err.__cause__ is not None else err.__context__
    return None


def is_interrupt(err: BaseException) -> bool:
    """Whether `err` is Ctrl-C: a KeyboardInterrupt, an error made of one (`interrupt_in`), or any
    error (not SystemExit) raised after SIGINT arrived while `sigint_watched` was active."""
    if interrupt_in(err) is not None:
        return True
    return isinstance(err, Exception) and _sigint_received.is_set()


def raise_if_interrupt(err: BaseException) -> None:
    """Raise KeyboardInterrupt (from `err`) if `err` is Ctrl-C in disguise (`is_interrupt`);
    `Terminated` if it is SIGTERM in disguise.

    For handlers that turn errors into findings: call it first in the `except` block.
    """
    if not isinstance(err, KeyboardInterrupt) and is_interrupt(err):
        kind = Terminated if signal_of(err) == signal.SIGTERM else KeyboardInterrupt
        raise kind(f"interrupted ({type(err).__name__}: {err})") from err


def signal_of(err: BaseException) -> int:
    """The signal an interrupt (`is_interrupt(err)`) came from: SIGTERM or SIGINT."""
    found = interrupt_in(err)
    if isinstance(found, Terminated):
        return signal.SIGTERM
    if found is None and _sigint_received.is_set():
        return _last_signal
    return signal.SIGINT


def exit_status(err: BaseException) -> int:
    """The command line's exit status after the interrupt `err`: 130 for Ctrl-C, 143 for SIGTERM."""
    return EXIT_STATUS[signal_of(err)]


@contextlib.contextmanager
def sigterm_as_interrupt():
    """Inside the block, SIGTERM raises `Terminated` in the main thread, as SIGINT raises
    KeyboardInterrupt; the previous handler is restored on exit.

    A process that ignores SIGTERM (its parent asked for that) keeps ignoring it, and off the main
    thread (only it can set handlers) the block runs unchanged.
    """
    previous = signal.getsignal(signal.SIGTERM)
    if threading.current_thread() is not threading.main_thread() or previous is signal.SIG_IGN:
        yield
        return

    def raise_terminated(signum, frame):
        global _last_signal
        _last_signal = signal.SIGTERM
        _sigint_received.set()  # for `is_interrupt`: an error raised from here on is this signal
        raise Terminated("terminated")

    signal.signal(signal.SIGTERM, raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
        # what follows in this process is no longer this command's (also where SIGINT is ignored and
        # `sigint_watched`, which clears it too, ran unwatched)
        _sigint_received.clear()


@contextlib.contextmanager
def sigint_watched():
    """Record whether SIGINT arrives inside the block (for `is_interrupt`), and never lose it.

    The handler notes the signal, then hands it to the Python handler it replaced (the default one
    raises KeyboardInterrupt), which is restored on exit. Python cannot raise an exception where
    the interrupt may land, inside a weakref callback or a `__del__` (importlib's module locks
    have such callbacks, so any import is exposed): it prints "Exception ignored" and drops the
    interrupt, and the command would run on. Inside the block such an interrupt is not printed but
    delivered again, `REDELIVERY_SECONDS` later, to the main thread's ordinary code.

    Where Python does not handle SIGINT (the process ignores it, as background jobs of a script
    do, or a native library owns it) or off the main thread (only it can set handlers), the block
    runs unwatched.
    """
    previous = signal.getsignal(signal.SIGINT)
    if threading.current_thread() is not threading.main_thread() or not callable(previous):
        yield
        return

    def note_then_pass_on(signum, frame):
        global _last_signal
        _last_signal = signal.SIGINT
        _sigint_received.set()
        previous(signum, frame)

    previous_hook = sys.unraisablehook

    def redeliver_lost_interrupt(unraisable):
        if not isinstance(unraisable.exc_value, KeyboardInterrupt):
            previous_hook(unraisable)
            return
        # Not from here: the hook itself is a place where Python cannot raise. A timer thread
        # trips SIGINT again once this hook (and the callback that called it) has returned.
        signum = signal.SIGTERM if isinstance(unraisable.exc_value, Terminated) else signal.SIGINT
        again = threading.Timer(REDELIVERY_SECONDS, _thread.interrupt_main, args=(signum,))
        again.daemon = True
        again.start()

    _sigint_received.clear()
    signal.signal(signal.SIGINT, note_then_pass_on)
    sys.unraisablehook = redeliver_lost_interrupt
    try:
        yield
    finally:
        sys.unraisablehook = previous_hook
        signal.signal(signal.SIGINT, previous)
        _sigint_received.clear()  # what follows in this process is no longer this command's


def quiet_teardown() -> None:
    """After Ctrl-C, let the interpreter's exit print no "Exception ignored in ... __del__".

    An import the interrupt cut short can leave half-built objects whose `__del__` fails when the
    interpreter tears the modules down (pyparsing's, under matplotlib, was seen to): noise after the
    command's one line, about objects the user stopped us building. Only the exit is silenced:
    the hook is swapped in by an exit handler, so the process runs with its own until then.
    """
    atexit.register(setattr, sys, "unraisablehook", _ignore)


def _ignore(unraisable) -> None:
    """An unraisable-exception hook that drops everything (see `quiet_teardown`)."""


def forget_unhandled_interrupt() -> None:
    """Clear CPython's "a KeyboardInterrupt went unhandled" mark, once the interrupt is handled.

    See the module docstring: without this, a process run with `python -m` whose Ctrl-C landed in a
    string `exec` ends killed by SIGINT instead of with the status its program returned. The mark
    is cleared on entry to every string `exec`, whatever the code; on an interpreter without it
    the call does nothing.
    """
    exec("pass", {})  # a constant string: the point is to pass through a string exec
