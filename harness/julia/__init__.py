"""The Julia backend: SciMLSensitivity adjoints of harness's Neural ODEs, through juliacall.

Importing this package does not start Julia (nor import juliacall or diffeqpy, nor download
anything): Julia starts on the first `compute` of a Julia engine.

    from harness.julia import JuliaAdjoint, julia_status
    julia_status()          # JuliaStatus(available, reason, checks), without starting Julia
    gradient(problem, engine=JuliaAdjoint("GaussAdjoint", route="python_vjp"))

`start()` starts Julia at once (a few seconds plus package loading); call it before importing torch
in a process that uses both (juliacall must come first; harness refuses the other order).

Install the Julia side with `harness julia setup`, then check it with `harness julia selftest`
(julia_env/README.md).
"""

from .engines import JuliaAdjoint, JuliaForwardSensitivity, julia_engines
from .environment import JuliaStatus, doctor_report, julia_status
from .names import ADJOINT_SENSEALGS, FORWARD_ROUTES, JULIA_SOLVERS, ROUTES
from .runtime import start

__all__ = [
    "ADJOINT_SENSEALGS",
    "FORWARD_ROUTES",
    "JULIA_SOLVERS",
    "ROUTES",
    "JuliaAdjoint",
    "JuliaForwardSensitivity",
    "JuliaStatus",
    "doctor_report",
    "julia_engines",
    "julia_status",
    "start",
]
