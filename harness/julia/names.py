"""The whitelist: every solver, sensitivity algorithm and route the Julia backend accepts.

Names from configs and the command line are checked here and only then passed to Julia, where
each selects one fixed constructor (`SOLVERS` / `sensitivity_algorithm` in HarnessJL.jl); no
Julia code is ever built from user text. A test keeps this table and the Julia one in step.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import HarnessInputError


@dataclass(frozen=True)
class JuliaSolver:
    name: str
    stiff: bool
    description: str


JULIA_SOLVERS: dict[str, JuliaSolver] = {
    s.name: s
    for s in (
        JuliaSolver("Tsit5", False, "Tsitouras 5(4)"),
        JuliaSolver("Vern7", False, "Verner 7(6)"),
        JuliaSolver("Vern9", False, "Verner 9(8)"),
        JuliaSolver("DP5", False, "Dormand-Prince 5(4)"),
        JuliaSolver("BS3", False, "Bogacki-Shampine 3(2)"),
        JuliaSolver("Rosenbrock23", True, "Rosenbrock 2(3), L-stable"),
        JuliaSolver("Rodas5P", True, "Rosenbrock 5(4), stiffly accurate"),
        JuliaSolver("KenCarp4", True, "ESDIRK 4(3)"),
        JuliaSolver("TRBDF2", True, "TR-BDF2 SDIRK 2(3)"),
        JuliaSolver("FBDF", True, "fixed-leading-coefficient BDF 1-5"),
        JuliaSolver("QNDF", True, "quasi-constant-step NDF 1-5"),
        JuliaSolver("RadauIIA5", True, "Radau IIA order 5"),
        JuliaSolver("AutoTsit5(Rosenbrock23())", True, "Tsit5, switching to Rosenbrock23 when stiff"),
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
