"""The compiled whole loop against the numpy driver, per adjoint, in one process.

One gradient of `harness bench`'s seed problem (2-3-2 tanh, B = 500, DP5) per adjoint, with the compiled loop on and off
(`harness._compiled.set_enabled`), the two timed round-robin repeat by repeat so that a busy machine
slows them alike: medians and their ratio side by side, for the `harness bench` tolerances (1e-4)
and the tutorial's (rtol 1e-6, atol 1e-4).

    python benchmarks/bench_compiled_loop.py [--repeats 30] [--batch 500]
"""

from __future__ import annotations

import argparse
import statistics
import time

import harness._compiled as compiled
from harness._forward import SolveOptions
from harness._provenance import cpu_model
from harness.problems import seed_problem
from harness.sensitivity import RecursiveCheckpointAdjoint, gradient

# label -> engine: the continuous adjoints and the discrete one, stored and with 4 checkpoints
ADJOINTS = {name: name for name in ("BacksolveAdjoint", "InterpolatingAdjoint", "QuadratureAdjoint", "GaussAdjoint",
                                    "RecursiveCheckpointAdjoint")}
ADJOINTS["RecursiveCheckpoint(c=4)"] = RecursiveCheckpointAdjoint(checkpoints=4)
SETTINGS = {"bench (rtol = atol = 1e-4)": (1e-4, 1e-4), "tutorial (rtol 1e-6, atol 1e-4)": (1e-6, 1e-4)}


def timed(problem, engine, rtol, atol, use_loop: bool) -> float:
    compiled.set_enabled(None if use_loop else False)
    try:
        before = compiled.loop_runs()
        start = time.perf_counter()
        gradient(problem, engine=engine, solver="DP5", rtol=rtol, atol=atol)
        seconds = time.perf_counter() - start
        assert (compiled.loop_runs() > before) == use_loop, "the loop ran where it should not, or did not"
        return seconds
    finally:
        compiled.set_enabled(None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--batch", type=int, default=500, help="initial states (bench: 500)")
    args = parser.parse_args()
    problem = seed_problem(batch=args.batch, data_options=SolveOptions("DP5", 1e-6, 1e-4))  # as `harness bench`
    print(f"CPU: {cpu_model()}; B = {args.batch}; median of {args.repeats}, numpy and compiled alternating")
    print(f"{'settings':34s} {'adjoint':26s} {'numpy':>9s} {'compiled':>9s} {'speed-up':>8s}")
    for label, (rtol, atol) in SETTINGS.items():
        for name, engine in ADJOINTS.items():
            for use_loop in (False, True):  # warm-up (and the loop's compilation or cache load)
                timed(problem, engine, rtol, atol, use_loop)
            runs = {False: [], True: []}
            for _ in range(args.repeats):
                for use_loop in (False, True):
                    runs[use_loop].append(timed(problem, engine, rtol, atol, use_loop))
            numpy_ms, loop_ms = (1e3 * statistics.median(runs[k]) for k in (False, True))
            print(f"{label:34s} {name:26s} {numpy_ms:7.2f}ms {loop_ms:7.2f}ms {numpy_ms / loop_ms:7.2f}x")


if __name__ == "__main__":
    main()
