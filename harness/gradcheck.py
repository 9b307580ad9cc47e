"""`harness gradcheck`: every engine's dL/dθ and dL/dz0 against a tight-tolerance ForwardSensitivity
reference.

Both are measured norm-wise, ‖g - r‖ / ‖r‖. The bound of each row is derived from the tolerance the
engine ran at:

- adjoints: the gradient inherits the global error of the forward and backward solves. An adaptive
  solve's global error is its local tolerance times the error growth over the interval; on these
  problems (t in [0, 10], |∂f/∂z| of order 1) that growth stays below 10³, so the bound is
  10³ · max(rtol, atol).
- finite differences: truncation O(h⁴) of the 4-point stencil (h = 1e-3, relative) plus the solver's
  error amplified by 1/h: 10³ · tol / h + 1e-8.
- the reference itself runs at 1e-10, so its own error (≤ 1e-7 by the same reasoning) is below every
  bound here.
- dL/dz0 is the adjoint state at t0 (the last value of the backward solve), so it carries the same
  global error as dL/dθ: the same relative bound. But a relative bound alone is unfair where dL/dz0
  is tiny: on the stiff variant the fast mode forgets z0 (e^{-1000 t}) and ‖dL/dz0‖ is about 1e-3 of
  a loss whose dL/dθ is about 1e2, while the backward solve controls each adjoint component only to
  `atol` absolutely. So dL/dz0 passes when ‖g - r‖ ≤ max(bound · ‖r‖, floor), with the absolute
  floor = √(B N) · 10³ · atol: each of the B N components within the global error 10³ · atol (the
  growth argument above applied to the absolute part of the tolerance), √(B N) turning that into a
  norm; for finite differences the solver's part divided by the step, 10³ · atol / h, as above.
  On the stiff variant at B = 100 and tol = 1e-8 that floor is about 3% of ‖dL/dz0‖: a wrong term or
  sign in dL/dz0 (an error of order ‖dL/dz0‖) fails, a 1% one does not. Measured there (B = 100,
  tol = 1e-8): QuadratureAdjoint and GaussAdjoint 1.5e-5 of ‖dL/dz0‖, beyond the relative bound
  alone (1e-5), 6e-8 absolute. On the other problems ‖dL/dz0‖ is of order 10²-10³ and the relative
  bound applies. For finite differences on the stiff variant the floor over ‖r‖ exceeds 1: the
  argument cannot bound their dL/dz0 there (measured 3e-8 relative: the stencil's solves make
  nearly the same errors, which cancel, but nothing guarantees that), and the table shows the
  bound as it is rather than a tighter one that is not derived.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field

import numpy as np

from ._distances import relative_error
from ._interrupts import raise_if_interrupt
from .errors import BackendError, BackendUnavailableError, RefusedError, SolverError, UnstableBacksolveError
from ._forward import SolveOptions
from ._memory_budget import check_gradient_memory
from .problems import augment_problem, load_problem
from .problems import multi_time_problem, seed_problem, stiff_problem
from .solvers import solver_for
from .sensitivity import (
    ENGINES,
    BacksolveAdjoint,
    FiniteDifferences,
    ForwardSensitivity,
    GaussAdjoint,
    InterpolatingAdjoint,
    QuadratureAdjoint,
    RecursiveCheckpointAdjoint,
    declaration_of,
    gradient,
    uses_harness_solvers,
)

GROWTH = 1e3  # error growth over t in [0, 10]; see the module docstring
REFERENCE_TOL = 1e-10


@dataclass
class Row:
    name: str
    status: str  # "ok", "beyond bound", "refused", "failed", "unavailable"
    rel_error: float | None = None  # dL/dθ: ‖g - r‖ / ‖r‖
    bound: float | None = None
    dz0_error: float | None = None  # dL/dz0: ‖g - r‖ / ‖r‖
    dz0_bound: float | None = None  # max(bound, dz0_floor / ‖r‖): the floor as a relative bound
    seconds: float | None = None
    n_rhs: int | None = None
    theta_grad: list | None = None
    reason: str = ""
    dz0_floor: float | None = None  # the absolute floor of ‖g - r‖ for dL/dz0 (module docstring)

    @property
    def ok(self) -> bool:
        # A refusal (BacksolveAdjoint on a stiff problem) is the specified, safe behaviour.
        return self.status in ("ok", "refused", "unavailable")


@dataclass
class Case:
    problem_name: str
    description: str
    solver: str
    reference_seconds: float
    rows: list[Row] = field(default_factory=list)


def python_engines():
    return [
        BacksolveAdjoint(),
        InterpolatingAdjoint(),
        InterpolatingAdjoint(checkpointing=True),
        QuadratureAdjoint(),
        GaussAdjoint(),
        RecursiveCheckpointAdjoint(),
        RecursiveCheckpointAdjoint(checkpoints=4),
        FiniteDifferences(),
    ]


def gradcheck_engines() -> list:
    """Harness's own rows, then one row per engine registered by name elsewhere (a user's own,
    `harness.register_engine`), built with no arguments. The reference is not a row."""
    engines = python_engines()
    own = {type(engine) for engine in engines} | {ForwardSensitivity}
    return engines + [cls() for cls in ENGINES.values() if cls not in own]


def engine_label(engine) -> str:
    if isinstance(engine, InterpolatingAdjoint) and engine.checkpointing:
        return "InterpolatingAdjoint (checkpointing)"
    if isinstance(engine, RecursiveCheckpointAdjoint) and engine.checkpoints is not None:
        return f"RecursiveCheckpointAdjoint ({engine.checkpoints} checkpoints)"
    return engine.name


def bound_for(engine, tol: float) -> float:
    if isinstance(engine, FiniteDifferences):
        return GROWTH * tol / engine.step + 1e-8
    return GROWTH * tol


def dz0_floor_for(engine, atol: float, n_components: int) -> float:
    """The absolute floor of ‖g - r‖ for dL/dz0 with B N = `n_components` entries: each within the
    global error 10³ · atol of the absolute part of the tolerance (divided by the step for finite
    differences), √(B N) · that in norm (module docstring)."""
    per_component = GROWTH * atol / engine.step if isinstance(engine, FiniteDifferences) else GROWTH * atol
    return float(np.sqrt(n_components)) * per_component


def dz0_bound_for(engine, tol: float, reference_dz0) -> tuple[float, float]:
    """(relative bound, absolute floor) of dL/dz0 for a reference dL/dz0 of shape (B, N): the relative
    bound is max(bound_for, floor / ‖r‖), so that one number is compared with ‖g - r‖ / ‖r‖."""
    floor = dz0_floor_for(engine, tol, np.size(reference_dz0))
    scale = float(np.linalg.norm(reference_dz0))
    return (max(bound_for(engine, tol), floor / scale) if scale > 0 else floor), floor


# A linear solve that fails inside an implicit step (scipy's splu: "Factor is exactly singular") is
# that row's numerical failure, as a SolverError is, not a traceback that ends the run.
NUMERICAL_FAILURES = (SolverError, RuntimeError, ArithmeticError, np.linalg.LinAlgError)


def check_case(problem, solver: str, tol: float, engines, extra_rows=()) -> Case:
    """Every engine's gradient of `problem` against the reference. A reference that cannot fit in
    memory or fails makes one row saying so (and the engines are not run: nothing to compare with);
    an engine that cannot fit is refused before it allocates."""
    reference_engine = ForwardSensitivity()
    start = time.perf_counter()
    try:
        check_gradient_memory(problem, reference_engine, solver, role="the reference")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            reference = gradient(problem, engine=reference_engine, solver=solver, rtol=REFERENCE_TOL,
                                 atol=REFERENCE_TOL)
    except RefusedError as err:
        return _without_reference(problem, solver, "refused", err, extra_rows)
    except NUMERICAL_FAILURES as err:
        raise_if_interrupt(err)
        return _without_reference(problem, solver, "failed", err, extra_rows)
    case = Case(problem.name, problem.describe(), solver, time.perf_counter() - start)
    for engine in engines:
        label, bound = engine_label(engine), bound_for(engine, tol)
        available, reason = declaration_of(engine).availability()
        if not available:
            case.rows.append(Row(label, "unavailable", bound=bound, reason=reason or ""))
            continue
        try:
            if uses_harness_solvers(engine):
                check_gradient_memory(problem, engine, solver)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # overflow while a solve blows up
                result = gradient(problem, engine=engine, solver=solver, rtol=tol, atol=tol)
        except (UnstableBacksolveError, RefusedError) as err:
            case.rows.append(Row(label, "refused", bound=bound, reason=str(err)))
            continue
        except (BackendError, BackendUnavailableError, *NUMERICAL_FAILURES) as err:
            # a backend's own error (Julia's MethodError, out of memory, a failed start) is this
            # row's failure, not the end of the run
            raise_if_interrupt(err)
            case.rows.append(Row(label, "failed", bound=bound, reason=_one_line(err)))
            continue
        rel = relative_error(result.dtheta, reference.dtheta)
        dz0_rel = relative_error(result.dz0, reference.dz0)
        dz0_bound, dz0_floor = dz0_bound_for(engine, tol, reference.dz0)
        ok = rel <= bound and dz0_rel <= dz0_bound
        case.rows.append(Row(label, "ok" if ok else "beyond bound", rel, bound, dz0_rel, dz0_bound,
                             result.seconds, result.n_rhs, result.dtheta.tolist(), dz0_floor=dz0_floor))
    case.rows.extend(extra_rows)
    return case


def _one_line(err: BaseException) -> str:
    """An error as one line: our own errors' messages are, others get their type in front."""
    own = (SolverError, UnstableBacksolveError, BackendError, BackendUnavailableError, RefusedError)
    text = str(err) if isinstance(err, own) else f"{type(err).__name__}: {err}"
    return " ".join(text.split())


def _without_reference(problem, solver: str, status: str, err: BaseException, extra_rows) -> Case:
    """The case of a problem whose reference was refused or failed: one row saying so, not ok
    when it failed (the engines were not checked)."""
    case = Case(problem.name, problem.describe(), solver, 0.0)
    case.rows.append(Row(f"{ForwardSensitivity.name} (reference)", status, reason=_one_line(err)))
    case.rows.extend(extra_rows)
    return case


def julia_unavailable_row() -> Row | None:
    """One row saying why the Julia engines cannot run here, or None when they can."""
    try:
        from .julia import julia_status
    except ImportError as err:
        raise_if_interrupt(err)
        return Row("Julia engines", "unavailable", reason=f"harness.julia cannot be imported: {err}")
    status = julia_status()
    return None if status.available else Row("Julia engines", "unavailable", reason=status.reason)


def run_gradcheck(*, tol: float = 1e-8, batch: int = 500, problem_file=None, include_julia: bool = True,
                  progress=None, require_julia: bool = False, augment: int = 0) -> list[Case]:
    """The gradcheck cases: the seed problem, the stiff variant and a multi-time loss (or a file).

    augment : check each problem fitted with this many augmented dimensions (`augment_problem`).

    require_julia : raise BackendUnavailableError (one line) when the Julia engines cannot run,
    instead of showing an "unavailable" row (`harness gradcheck --backend julia`).
    """
    if require_julia:
        unavailable = julia_unavailable_row()
        if unavailable is not None:
            raise BackendUnavailableError(f"the Julia backend is unavailable: {unavailable.reason}")
    if problem_file is not None:
        problem = load_problem(problem_file)
        solver = solver_for(problem.model, "DP5").name
        specs = [(problem, solver)]
    else:
        data = SolveOptions("DP5", 1e-6, 1e-4)
        specs = [
            (seed_problem(batch=batch, data_options=data), "DP5"),
            # the stiff variant needs an implicit solver; a smaller batch keeps the 1e-10
            # reference affordable without changing the per-row dynamics being checked
            (stiff_problem(batch=min(batch, 100), data_options=data), "RadauIIA5"),
            (multi_time_problem(batch=batch, data_options=data), "DP5"),
        ]
    specs = [(augment_problem(problem, augment, seed=1), solver) for problem, solver in specs]
    cases = []
    for problem, solver in specs:
        engines, extra = gradcheck_engines(), []
        if include_julia:
            unavailable = julia_unavailable_row()
            if unavailable is None:
                from .julia import julia_engines

                engines += list(julia_engines())
            else:
                extra = [unavailable]  # shown, never silently dropped
        case = check_case(problem, solver, tol, engines, extra)
        cases.append(case)
        if progress is not None:
            progress(case)
    return cases


def cases_to_json(cases: list[Case], tol: float) -> dict:
    engines = []
    for case in cases:
        for row in case.rows:
            engines.append({
                "problem": case.problem_name, "solver": case.solver, "name": row.name,
                "status": row.status, "rel_error": row.rel_error, "bound": row.bound, "ok": row.ok,
                "dz0_error": row.dz0_error, "dz0_bound": row.dz0_bound, "dz0_floor": row.dz0_floor,
                "seconds": row.seconds, "n_rhs": row.n_rhs, "theta_grad": row.theta_grad,
                "reason": row.reason,
            })
    # rel_error and bound are dL/dθ's (their names kept from before dL/dz0 was scored)
    return {"tolerance": tol, "reference": f"ForwardSensitivity at rtol = atol = {REFERENCE_TOL:g}",
            "ok": all(e["ok"] for e in engines), "engines": engines}


def format_case(case: Case) -> str:
    lines = [f"{case.description}  [solver {case.solver}; reference {case.reference_seconds:.2f} s]",
             f"  {'engine':38s} {'dθ error':>9s} {'bound':>7s} {'dz0 error':>9s} {'bound':>7s} {'time':>9s} "
             f"{'evals':>7s}  status"]
    for row in case.rows:
        def number(x, spec):
            return "" if x is None else format(x, spec)

        err, bound = number(row.rel_error, ".2e"), number(row.bound, ".0e")
        # the dz0 bound can be the floor over ‖r‖, not a round number: two digits shown
        dz0_err, dz0_bound = number(row.dz0_error, ".2e"), number(row.dz0_bound, ".1e")
        secs = "" if row.seconds is None else f"{row.seconds * 1e3:.1f} ms"
        evals = "" if row.n_rhs is None else str(row.n_rhs)
        status = row.status if not row.reason else f"{row.status}: {row.reason}"
        lines.append(f"  {row.name:38s} {err:>9s} {bound:>7s} {dz0_err:>9s} {dz0_bound:>7s} {secs:>9s} "
                     f"{evals:>7s}  {status}")
    return "\n".join(lines)
