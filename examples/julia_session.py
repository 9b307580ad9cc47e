"""A Julia gradient beside the Python one: SciMLSensitivity's GaussAdjoint and the harness's, on the
seed problem with 8 initial states, and their relative difference.

    python examples/julia_session.py

Needs the julia extra and a Julia with the packages of julia_env/ (`harness julia setup`). Where
Julia is not available it says why, in one line, and exits with status 0: nothing is faked.
"""

import sys

import numpy as np

import harness
from harness.julia import JuliaAdjoint, julia_status


def main() -> dict | None:
    status = julia_status()  # checks the installation without starting Julia
    if not status.available:
        print(f"Julia is not available here: {status.reason}")
        return None
    problem = harness.build_problem("seed", batch=8)
    python = harness.gradient(problem, engine="GaussAdjoint", solver="DP5", rtol=1e-8, atol=1e-8)
    julia = harness.gradient(problem, engine=JuliaAdjoint("GaussAdjoint", route="python_vjp"),
                             solver="DP5", rtol=1e-8, atol=1e-8)
    difference = float(np.linalg.norm(julia.dtheta - python.dtheta) / np.linalg.norm(python.dtheta))
    print(f"GaussAdjoint, Julia against Python: dL/dθ relative difference {difference:.2e}")
    return {"python": python.dtheta, "julia": julia.dtheta, "difference": difference}


if __name__ == "__main__":
    main()
    sys.exit(0)
