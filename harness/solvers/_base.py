"""What every solver is: a small object with a name, a few declared properties and its `integrate`."""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

from ._trajectory import Trajectory


class Solver(ABC):
    """A forward ODE method, registered by name in `harness.solvers.SOLVERS`.

    Attributes
    ----------
    name : str
        The registry key (the name of the same method in Julia where there is one).
    implicit : bool
        Needs a Jacobian; the choice for stiff models (see `solver_for`).
    order : int
        Order of the propagated solution (the highest order, for variable-order methods).
    dense_output : int or str
        Degree of the dense-output polynomial, or a description where it varies.
    description : str
    stage_slots : int
        How many stage records a `QuadratureTailSystem` needs to be integrated with this method
        (1 for methods that integrate its `joint_rhs`).
    reads_t_eval : bool
        `integrate` takes `t_eval` and reads the states there from each step's dense output, without
        ending a step at them (a forward pass then observes its times without stopping; see
        `harness._forward`). False: a caller that needs states at given times ends a solve there.
    """

    name: str
    implicit: bool
    order: int
    dense_output: int | str
    description: str
    stage_slots: int = 1
    reads_t_eval: bool = False

    @abstractmethod
    def integrate(
        self,
        rhs,
        t0: float,
        t1: float,
        y0: np.ndarray,
        *,
        rtol: float,
        atol: float,
        jac=None,
        dense: bool = False,
        h0: float | None = None,
        max_steps: int | None = None,
        on_step=None,
        t_eval=None,
    ) -> Trajectory:
        """Integrate from t0 to t1; the arguments are those of `harness.solvers.integrate`, already
        checked (`t_eval` is given only to a solver that `reads_t_eval`)."""

    def __repr__(self) -> str:
        return f"<solver {self.name}: {self.description}>"
