"""One gradient with two engines, compared with each other and with a tight reference.

QuadratureAdjoint and GaussAdjoint on the seed problem at rtol = atol = 1e-8, against forward
sensitivities at 1e-10; the parameter whose dL/dθ differs most is named.

    python examples/gradient_two_engines.py [--batch 50]
"""

import argparse

import numpy as np

import harness
from harness.testing import assert_gradients_agree


def relative_error(g, reference) -> float:
    return float(np.linalg.norm(g - reference) / np.linalg.norm(reference))


def main(batch: int = 50) -> dict:
    problem = harness.build_problem("seed", batch=batch)
    reference = harness.gradient(problem, engine="ForwardSensitivity", solver="DP8", rtol=1e-10, atol=1e-10)
    errors = {}
    for engine in ("QuadratureAdjoint", "GaussAdjoint"):
        g = harness.gradient(problem, engine=engine, solver="DP5", rtol=1e-8, atol=1e-8)
        errors[engine] = relative_error(g.dtheta, reference.dtheta)
        print(f"{engine:18s} dL/dθ relative error {errors[engine]:.2e} against ForwardSensitivity; "
              f"{g.forward_stats.n_rhs} forward and {g.backward_stats.n_rhs} backward evaluations")
    # raises, naming the parameters that disagree most, if the two engines differ beyond 1e-6
    assert_gradients_agree(problem, ["QuadratureAdjoint", "GaussAdjoint"], rtol=1e-6)
    print("QuadratureAdjoint and GaussAdjoint agree within rtol = 1e-6")
    return errors


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=50)
    main(parser.parse_args().batch)
