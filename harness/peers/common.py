"""What the peer adapters share: the engine value, the problem-file hand-off, the result type."""

from __future__ import annotations

import functools
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import BackendUnavailableError, HarnessInputError, RefusedError
from ..sensitivity import GradientResult, register_engine


class PeerGradientResult(GradientResult):
    """A GradientResult whose backward f-evaluation count may be unknown (None)."""

    @property
    def n_rhs(self) -> int:
        backward = self.backward_stats.n_rhs or 0
        return (self.forward_stats.n_rhs or 0) + backward


@dataclass(frozen=True)
class PeerEngine:
    """An external engine: `backend:method` with its backward solver and tolerances.

    `compute` follows the harness engine protocol (`harness.sensitivity.register_engine`; each
    backend registers its subclass below): it writes the problem at θ to a problem file and hands
    the file to the adapter's
    `gradient_from_file`, the same entry point a researcher can call on any problem file.
    """

    backend: str
    method: str
    solver: str
    rtol: float
    atol: float
    # False: a cross-check that needs the gradient, not its time. diffrax then compiles the gradient
    # once (with its evaluation counter) instead of twice (the timed call has no counter), and the
    # result's `seconds` is NaN; torchdiffeq compiles nothing and times its call either way.
    timed: bool = True

    @property
    def name(self) -> str:
        return f"{self.backend}:{self.method}"

    def compute(self, problem, theta, options):
        from ..problems import save_problem

        from . import _adapter

        check_supported(problem, self.name)  # before any file is written or a peer package imported
        with tempfile.TemporaryDirectory(prefix="harness-peer-") as folder:
            path = save_problem(problem.with_theta(theta), Path(folder) / "problem.npz")
            result = _adapter(self.backend).gradient_from_file(
                path, method=self.method, solver=options.solver, rtol=options.rtol,
                atol=options.atol, backward_solver=self.solver, backward_rtol=self.rtol,
                backward_atol=self.atol, timed=self.timed,
            )
        # a peer whose backward solve blew up may hand back inf or NaN without raising: never a
        # silently wrong row
        if not (np.all(np.isfinite(result.dtheta)) and np.all(np.isfinite(result.dz0))):
            raise FloatingPointError(f"{self.name} returned a non-finite gradient")
        return result


def _status(backend: str) -> tuple[bool, str | None]:
    from . import peer_status

    return peer_status(backend)


@register_engine(backend="torchdiffeq", uses_harness_solvers=False,
                 availability=functools.partial(_status, "torchdiffeq"))
class TorchdiffeqEngine(PeerEngine):
    """A torchdiffeq method (`harness.peers.PEER_METHODS["torchdiffeq"]`)."""


@register_engine(backend="diffrax", uses_harness_solvers=False,
                 availability=functools.partial(_status, "diffrax"))
class DiffraxEngine(PeerEngine):
    """A diffrax method (`harness.peers.PEER_METHODS["diffrax"]`)."""

    # The first call compiles; the comparison makes one untimed call first.
    needs_warmup = True


def check_supported(problem, name: str) -> None:
    """Refuse, in one line, what the adapters cannot express: they write the tutorial's model and
    loss (f(z) without t, every component observed at the shared times). Only harness.model.MLP has
    a PyTorch and a JAX twin (the adapters rebuild it from the problem file); any other model of
    harness's protocol is refused (RefusedError) before a file is written or a peer is imported."""
    from ..model import MLP

    if not isinstance(problem.model, MLP):
        describe = getattr(problem.model, "describe", None)
        what = describe() if callable(describe) else type(problem.model).__name__
        raise RefusedError(f"{name} rebuilds harness.model.MLP in its own framework and has no version of "
                           f"the model {what!r} (problem {problem.name!r}): compare it with harness's own "
                           "engines or the Julia route 'python_vjp'")
    unsupported = [what for what, present in (
        ("augmented dimensions", problem.augment), ("time-dependent fields", not problem.model.autonomous),
        ("per-trajectory observation times (a mask)", problem.mask is not None)) if present]
    if unsupported:
        raise HarnessInputError(f"{name} does not support {' or '.join(unsupported)} (problem {problem.name!r})")


def check_solver(backend: str, solver: str, table: dict) -> str:
    """The peer's own name for a harness solver name, or BackendUnavailableError."""
    if solver not in table:
        raise BackendUnavailableError(
            f"{backend} has no counterpart of {solver}: it is compared with "
            f"{', '.join(f'{k} ({v})' for k, v in table.items())}"
        )
    return table[solver]
