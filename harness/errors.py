"""Exception types.

`HarnessInputError` is a user mistake (bad value, bad file, bad name): the CLI prints its message on
one line and exits with status 2. The others are numerical failures that a user must see, never a
silently wrong number.
"""


class HarnessInputError(ValueError):
    """A value supplied by the user is invalid; the message names it and what was expected."""


class SolverError(RuntimeError):
    """An ODE solve did not reach its end time.

    The message names the method, the time reached and the solver's own message.
    """

    def __init__(self, method: str, t_reached: float, t_target: float, message: str):
        self.method = method
        self.t_reached = t_reached
        self.t_target = t_target
        self.solver_message = message
        super().__init__(
            f"{method} failed at t = {t_reached:.6g} (target t = {t_target:.6g}): {message}"
        )


class UnstableBacksolveError(RuntimeError):
    """`BacksolveAdjoint` could not reconstruct z(t0) by integrating backwards.

    Its gradient would be unreliable; `InterpolatingAdjoint` or `QuadratureAdjoint` read z from the
    stored forward solution instead and do not have this failure mode.
    """


class BackendUnavailableError(RuntimeError):
    """A backend (e.g. Julia) cannot run on this machine; the message says why."""


class BackendError(RuntimeError):
    """A backend (e.g. Julia) raised an error of its own while computing a gradient.

    The message is one line: the engine, the backend's exception type and its first line.
    """


class RefusedError(HarnessInputError):
    """An engine declines a problem it cannot solve reliably or affordably; the message says why
    and what to use instead."""


class TrainingDivergedError(RuntimeError):
    """Training stopped at a step whose loss or gradient was not finite (or whose solve failed or
    ran away).

    `result` is the `TrainingResult` of the steps before it (status "diverged"), so that a caller
    can still report them; the exception makes sure no caller takes it for a finished run.
    """

    def __init__(self, message: str, result=None):
        super().__init__(message)
        self.result = result
