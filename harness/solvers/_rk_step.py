"""One step of an embedded explicit Runge-Kutta pair (the analogue of scipy's `rk_step`).

A method is its tableau. `rk_step` computes the stages, the new solution and the error estimate of
one step and nothing else: whether to accept it, and what step to try next, is the controller's
(`_step_control.py`); time, acceptance, dense output and statistics are the loop's (`_explicit_rk.py`).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np


@dataclass(frozen=True)
class Tableau:
    """An embedded RK pair with FSAL and a dense-output matrix P (stages x polynomial degree).

    Shapes, for s stages: A (s, s), B (s,), C (s,), E (s + 1,) error weights including the FSAL
    stage, P (s + 1, degree).
    """

    A: np.ndarray
    B: np.ndarray
    C: np.ndarray
    E: np.ndarray
    P: np.ndarray
    order: int  # of the propagated solution
    error_order: int  # of the embedded (error) method

    @property
    def n_stages(self) -> int:
        return len(self.B)

    @property
    def dense_degree(self) -> int:
        return self.P.shape[1]

    @cached_property
    def coefficients(self) -> np.ndarray:
        """Every combination a step forms, y + h Σⱼ aᵢⱼ Kⱼ, as a row of this (s + 2, s + 2) matrix
        multiplying the rows [y, K₀, ..., K_s]: rows 0..s-1 the stages, row s the solution, row s+1
        the error estimate (which has no y). Column 0 multiplies y; the others are scaled by h."""
        s = self.n_stages
        coefficients = np.zeros((s + 2, s + 2))
        coefficients[: s + 1, 0] = 1.0
        coefficients[:s, 1 : self.A.shape[1] + 1] = self.A
        coefficients[s, 1 : s + 1] = self.B
        coefficients[s + 1, 1:] = self.E
        coefficients.flags.writeable = False
        return coefficients


class StepWorkspace:
    """The buffers of one solve's steps, allocated once: rows Y = [y, K₀, ..., K_s] of length D,
    and the coefficients scaled by the current h, with the views each stage uses.

    Each stage's input, the new solution and the error estimate are each one product of a row of
    the scaled coefficients with rows of Y: at Neural ODE sizes one call instead of two (product,
    then add y) is worth having, and so is making the views once rather than per step.
    """

    def __init__(self, tableau: Tableau, size: int):
        s = tableau.n_stages
        self.tableau = tableau
        self.n_stages = s
        self.Y = np.empty((s + 2, size))
        self.K = self.Y[1:]  # K[0] = f(t, y) on entry (first same as last); K[s] = f(t + h, y_new)
        self._hc = tableau.coefficients.copy()
        self._scaled = self._hc[:, 1:]  # rewritten in place each step; the views below follow
        # per stage: (index, node c as a Python float, its row of hc, the rows of Y it combines, its K)
        self.stages = [(i, float(tableau.C[i]), self._hc[i, : i + 1], self.Y[: i + 1], self.K[i]) for i in range(1, s)]
        self.solution_row, self.Y_solution = self._hc[s, : s + 1], self.Y[: s + 1]
        self.error_row = self._hc[s + 1, 1:]
        # the rows (h B, h E) over the stages: what a quadrature tail is summed with
        self.quadrature_rows = self._hc[s:, 1:]
        self.K_last = self.K[s]

    def scale_by(self, h: float) -> None:
        np.multiply(self.tableau.coefficients[:, 1:], h, out=self._scaled)


def rk_step(stage_rhs, t: float, t_new: float, h: float, work: StepWorkspace) -> tuple[np.ndarray, np.ndarray]:
    """One step from (t, y = work.Y[0]) with K₀ = f(t, y) in work.K[0], to t_new = t + h.

    Parameters
    ----------
    stage_rhs : callable (t, y, stage, out) -> None
        Writes f(t, y), shape (D,), into `out` for stage index `stage`.
    t_new : float
        The end of the step, passed separately because the last step is clipped to end exactly at
        the end time, where t + h may differ from it by a rounding.
    work : StepWorkspace
        Its K[1:] receive the stages, K[s] = f(t_new, y_new) (the next step's K₀ if accepted).

    Returns
    -------
    y_new : ndarray, shape (D,)
    error : ndarray, shape (D,)
        The local error estimate h Σᵢ eᵢ Kᵢ (unscaled).
    """
    work.scale_by(h)
    for i, c, row, previous, k in work.stages:
        stage_rhs(t + c * h, row @ previous, i, k)
    y_new = work.solution_row @ work.Y_solution
    stage_rhs(t_new, y_new, work.n_stages, work.K_last)
    return y_new, work.error_row @ work.K
