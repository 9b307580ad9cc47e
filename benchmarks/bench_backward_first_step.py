"""How the first step of an explicit backward solve affects its cost: backward evaluations per engine
for a grid of problems, with the first step taken as a fraction of the forward pass's last proposed
step, or chosen by the solver's initial-step heuristic, side by side.

Usage: python benchmarks/bench_backward_first_step.py [--seeds N]

The counts are deterministic (no timing), so the table is the same on any machine. The harness uses
`harness.solvers._step_rules.BACKWARD_FIRST_STEP_FRACTION` (read by the numpy and the compiled
backward pass alike); this script is the measurement behind it.
"""

from __future__ import annotations

import argparse
from unittest import mock

from harness._forward import SolveOptions
from harness.problems import deep_problem, multi_time_problem, seed_problem
from harness.sensitivity import BacksolveAdjoint, InterpolatingAdjoint, QuadratureAdjoint, gradient
from harness.solvers import _step_rules as step_rules

PROBLEMS = {"seed": seed_problem, "multi_time": multi_time_problem, "deep": deep_problem}
TOLERANCES = (1e-4, 1e-6)
CHOICES = {"heuristic": None, "1.0 x h_last": 1.0, "0.5 x h_last": 0.5, "0.3 x h_last": 0.3}


def backward_evaluations(engine, fraction, n_seeds: int) -> int:
    """Total backward right-hand-side evaluations over problems x seeds x tolerances."""
    total = 0
    with mock.patch.object(step_rules, "BACKWARD_FIRST_STEP_FRACTION", fraction):
        for make in PROBLEMS.values():
            for seed in range(n_seeds):
                problem = make(seed=seed, data_options=SolveOptions("DP5", 1e-6, 1e-4))
                for tol in TOLERANCES:
                    total += gradient(problem, engine=engine, rtol=tol, atol=tol).backward_stats.n_rhs
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=6)
    args = parser.parse_args()
    engines = (BacksolveAdjoint(), InterpolatingAdjoint(), QuadratureAdjoint())
    print(f"Backward evaluations, summed over {sorted(PROBLEMS)} x {args.seeds} seeds x tolerances "
          f"{TOLERANCES} (DP5); the harness uses {step_rules.BACKWARD_FIRST_STEP_FRACTION} x h_last")
    print(f"{'first step':<14}" + "".join(f"{e.name:>22}" for e in engines))
    baseline = None
    for label, fraction in CHOICES.items():
        counts = [backward_evaluations(engine, fraction, args.seeds) for engine in engines]
        baseline = baseline or counts
        cells = "".join(f"{c:>14} ({c / b:.2f}x)" for c, b in zip(counts, baseline))
        print(f"{label:<14}{cells}")


if __name__ == "__main__":
    main()
