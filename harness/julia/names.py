"""The whitelist: every solver, sensitivity algorithm and route the Julia backend accepts.

Names from configs and the command line are checked here and only then passed to Julia, where
each selects one fixed constructor (`SOLVERS` / `sensitivity_algorithm` in HarnessJL.jl); no
Julia code is ever built from user text. A test keeps this table and the Julia one in step.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import HarnessInputError, RefusedError


# Solver families: how a method treats the Jacobian decides what can go wrong with it (a
# Rosenbrock method uses J in its formula, the Newton-based ones only to converge).
EXPLICIT, ROSENBROCK, SDIRK, BDF, FIRK, AUTO_SWITCHING = (
    "explicit Runge-Kutta", "Rosenbrock", "SDIRK", "BDF", "fully implicit Runge-Kutta", "auto-switching")
# Families whose implicit stages are solved by Newton iterations on a differentiated f.
NEWTON_FAMILIES = (SDIRK, BDF, FIRK)


@dataclass(frozen=True)
class JuliaSolver:
    name: str
    stiff: bool
    description: str
    family: str


JULIA_SOLVERS: dict[str, JuliaSolver] = {
    s.name: s
    for s in (
        JuliaSolver("Tsit5", False, "Tsitouras 5(4)", EXPLICIT),
        JuliaSolver("Vern7", False, "Verner 7(6)", EXPLICIT),
        JuliaSolver("Vern9", False, "Verner 9(8)", EXPLICIT),
        JuliaSolver("DP5", False, "Dormand-Prince 5(4)", EXPLICIT),
        JuliaSolver("BS3", False, "Bogacki-Shampine 3(2)", EXPLICIT),
        JuliaSolver("Rosenbrock23", True, "Rosenbrock-W 2(3), L-stable", ROSENBROCK),
        JuliaSolver("Rodas5P", True, "Rosenbrock 5(4), stiffly accurate", ROSENBROCK),
        JuliaSolver("KenCarp4", True, "ESDIRK 4(3)", SDIRK),
        JuliaSolver("TRBDF2", True, "TR-BDF2 SDIRK 2(3)", SDIRK),
        JuliaSolver("FBDF", True, "fixed-leading-coefficient BDF 1-5", BDF),
        JuliaSolver("QNDF", True, "quasi-constant-step NDF 1-5", BDF),
        JuliaSolver("RadauIIA5", True, "Radau IIA order 5", FIRK),
        JuliaSolver("AutoTsit5(Rosenbrock23())", True, "Tsit5, switching to Rosenbrock23 when stiff",
                    AUTO_SWITCHING),
    )
}

# harness.solvers names -> the Julia method closest to each (used when an engine has no solver of
# its own and the caller's options name a Python solver). DP8 -> Vern9: the high-order explicit
# method in our whitelist; BDF -> QNDF: scipy's BDF is a quasi-constant-step NDF code.
PYTHON_TO_JULIA_SOLVER: dict[str, str] = {
    "DP5": "DP5",
    "BS3": "BS3",
    "DP8": "Vern9",
    "RadauIIA5": "RadauIIA5",
    "BDF": "QNDF",
}

ADJOINT_SENSEALGS = ("BacksolveAdjoint", "InterpolatingAdjoint", "QuadratureAdjoint", "GaussAdjoint")
# Discretise-then-optimise: reverse mode through the solver's steps, the counterpart of harness's
# RecursiveCheckpointAdjoint. ReverseDiff traces f itself, so only on route "native".
DISCRETE_SENSEALGS = ("ReverseDiffAdjoint",)

# How f's derivatives reach SciMLSensitivity.
ROUTES: dict[str, str] = {
    "python_vjp": "Python VJP",  # our exact VJPs (harness.model.MLP.vjp) as ODEFunction vjp/vjp_p
    "finite_difference": "finite differences",  # FiniteDiff Jacobians of the Python f, no code of ours
    "native": "native Julia MLP",  # the MLP re-implemented in Julia, differentiated by Zygote
}
# Forward sensitivities use Jacobians, not VJPs: their "python" route supplies jac/paramjac.
FORWARD_ROUTES: dict[str, str] = {
    "python_jacobian": "Python Jacobians",
    "finite_difference": "finite differences",
    "native": "native Julia MLP",
}

# SciMLSensitivity methods that differentiate f with Julia AD. Julia AD cannot see into a Python
# f: these error, or return zeros without complaint (SciMLSensitivity#334), so they are refused
# on the Python routes, by name, rather than silently giving a wrong gradient.
AD_THROUGH_F = {
    "ZygoteVJP", "EnzymeVJP", "ReverseDiffVJP", "TrackerVJP", "MooncakeVJP", "ReactantVJP",
    "ForwardDiffSensitivity", "ReverseDiffAdjoint", "TrackerAdjoint", "ZygoteAdjoint",
    "EnzymeAdjoint", "MooncakeAdjoint",
}


def _unknown(kind: str, name, valid) -> HarnessInputError:
    return HarnessInputError(f"unknown Julia {kind} {name!r}: expected one of {sorted(valid)}")


def check_julia_solver(name: str) -> JuliaSolver:
    """The whitelist entry for a Julia solver name, or a HarnessInputError listing the valid ones."""
    if name not in JULIA_SOLVERS:
        raise _unknown("solver", name, JULIA_SOLVERS)
    return JULIA_SOLVERS[name]


def julia_solver_for(python_solver: str) -> str:
    """The Julia solver standing in for a harness.solvers name (or a Julia name, unchanged)."""
    if python_solver in JULIA_SOLVERS:
        return python_solver
    if python_solver in PYTHON_TO_JULIA_SOLVER:
        return PYTHON_TO_JULIA_SOLVER[python_solver]
    raise _unknown("solver", python_solver, set(JULIA_SOLVERS) | set(PYTHON_TO_JULIA_SOLVER))


def check_sensealg(name: str, route: str) -> str:
    """An adjoint name valid for `route`; AD-through-f methods are refused on the Python routes."""
    check_route(route)
    if name in AD_THROUGH_F and route != "native":
        raise HarnessInputError(
            f"sensealg {name!r} with route {route!r}: {name} differentiates f with Julia AD, which "
            "cannot see through a Python f (it fails or returns zero gradients, "
            "SciMLSensitivity#334); use route 'python_vjp' or 'finite_difference' with one of "
            f"{list(ADJOINT_SENSEALGS)}, or route 'native'"
        )
    if name in DISCRETE_SENSEALGS:
        return name  # route "native" here: the Python routes were refused above
    if name not in ADJOINT_SENSEALGS:
        raise _unknown("sensealg", name, ADJOINT_SENSEALGS + DISCRETE_SENSEALGS)
    return name


def check_discrete_solver(sensealg: str, solver: str) -> None:
    """Refuse ReverseDiffAdjoint with a Newton-based implicit solver (SDIRK, BDF, FIRK) before
    Julia starts, with a RefusedError naming the solver.

    Upstream marks ReverseDiffAdjoint through every implicit solver that differentiates f with
    ForwardDiff `@test_broken` (SciMLSensitivity 7.112.3 test/Core2/stiff_adjoints.jl L231-239;
    TRBDF2 in test/Core2/autodiff_events.jl L79-86) and tests the finite-difference variant only
    with a Rosenbrock method (Rosenbrock23(autodiff = AutoFiniteDiff()), test/Core1/
    concrete_solve_derivatives.jl L704-728). So the Rosenbrock family runs with AutoFiniteDiff()
    (HarnessJL.jl `finite_difference_algorithm`) and the Newton-based families are refused, as
    harness's own RecursiveCheckpointAdjoint refuses implicit solvers.
    """
    if sensealg not in DISCRETE_SENSEALGS:
        return
    family = check_julia_solver(solver).family
    if family in NEWTON_FAMILIES:
        allowed = sorted(s.name for s in JULIA_SOLVERS.values() if s.family not in NEWTON_FAMILIES)
        raise RefusedError(
            f"{sensealg} with {solver} ({family}): reverse mode through Newton iterations is broken "
            "upstream (SciMLSensitivity test/Core2/stiff_adjoints.jl marks it @test_broken): use one of "
            f"{allowed}, or a continuous adjoint (e.g. GaussAdjoint) with {solver}"
        )


def check_route(route: str, routes: dict[str, str] = ROUTES) -> str:
    if route not in routes:
        raise _unknown("route", route, routes)
    return route


# Julia AD back ends for the native route's VJPs (the Python routes take none: their VJPs are ours
# or finite differences).
NATIVE_VJPS = ("ZygoteVJP",)


def check_vjp(vjp: str | None, sensealg: str, route: str) -> str | None:
    """The VJP back end for (sensealg, route): None (the route's own) or a Julia AD name on 'native'."""
    if vjp is None:
        return None
    if route != "native":
        if vjp in AD_THROUGH_F or vjp == "automatic":
            raise HarnessInputError(
                f"{sensealg}(autojacvec={vjp}) with route {route!r}: Julia AD cannot differentiate a "
                "Python f (it fails or returns zero gradients, SciMLSensitivity#334); leave vjp "
                "unset so the route's exact VJPs or finite differences are used, or use route 'native'"
            )
        raise _unknown("vjp", vjp, ())
    if vjp not in NATIVE_VJPS:
        raise _unknown("vjp for route 'native'", vjp, NATIVE_VJPS)
    return vjp
