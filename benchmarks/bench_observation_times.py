"""What observation times cost: evaluations of one gradient with 20 observation times against one.

The forward pass reads z at the observation times from its solver's dense output instead of ending a
step at each (`harness/_forward.py`), so a problem observed at 20 times in [t0, t1] should take about
the forward evaluations of the same problem observed at t1 alone. This script counts, per engine, the
forward and backward right-hand-side evaluations (and accepted/rejected steps) of one gradient on
both problems, on the numpy reference path (HARNESS_COMPILED=0 unless `--compiled`), and prints them
side by side. Counts, not times: they do not depend on the machine, only on the code.

Usage:
    python benchmarks/bench_observation_times.py [--out results.json] [--compiled]

The problems: MLP 2-16-2 and 2-32-32-2 (tanh) at B = 16 observed at 20 times, and 2-50-2 at B = 1
(a single trajectory) at 30 times, each also observed at t1 = 10 alone; the many times are evenly
spaced in (0, 10] and end at 10. DP5 at rtol = atol = 1e-6, z0 ~ U[-2, 2]², θ and the data's θ drawn
from a fixed seed (`MLP.init`), data = z(t) of the data's θ solved at rtol = atol = 1e-10.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

ENGINES = ("BacksolveAdjoint", "InterpolatingAdjoint", "QuadratureAdjoint", "GaussAdjoint",
           "RecursiveCheckpointAdjoint", "InterpolatingAdjoint(checkpointing)")
# (shape, widths, batch, the many observation times' count)
CASES = (("2-16-2, B 16", (2, 16, 2), 16, 20), ("2-32-32-2, B 16", (2, 32, 32, 2), 16, 20),
         ("2-50-2, B 1", (2, 50, 2), 1, 30))
T1, TOL = 10.0, 1e-6


def problem(widths, batch, times):
    from harness import MLP, Problem
    from harness._forward import SolveOptions, solve_forward

    model = MLP(widths)
    rng = np.random.default_rng(7)
    theta = model.init(rng)
    truth = model.init(rng)
    z0 = rng.uniform(-2.0, 2.0, size=(batch, widths[0]))
    times = np.asarray(times, dtype=np.float64)
    data = solve_forward(model, truth, z0, 0.0, times, SolveOptions("DP5", 1e-10, 1e-10)).z_at_times
    return Problem(model, theta, z0, 0.0, times, data, "observation-times")


def engine(name):
    from harness import InterpolatingAdjoint, resolve_engine

    if name == "InterpolatingAdjoint(checkpointing)":
        return InterpolatingAdjoint(checkpointing=True)
    return resolve_engine(name)


def counts(result) -> dict:
    fwd, bwd = result.forward_stats, result.backward_stats
    return {"forward_rhs": fwd.n_rhs, "forward_accepted": fwd.n_accepted, "forward_rejected": fwd.n_rejected,
            "backward_rhs": bwd.n_rhs, "backward_accepted": bwd.n_accepted, "backward_rejected": bwd.n_rejected,
            "path": result.path}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, help="write the counts as JSON here")
    parser.add_argument("--compiled", action="store_true", help="the default (compiled) path instead of numpy")
    args = parser.parse_args(argv)
    if not args.compiled:
        os.environ["HARNESS_COMPILED"] = "0"
    from harness import gradient
    from harness._provenance import provenance

    rows = []
    for shape, widths, batch, many in CASES:
        for label, times in (("1 time", [T1]), (f"{many} times", np.linspace(T1 / many, T1, many))):
            prob = problem(widths, batch, times)
            for name in ENGINES:
                result = gradient(prob, engine=engine(name), rtol=TOL, atol=TOL)
                rows.append({"shape": shape, "times": label, "engine": name, **counts(result)})
    header = (f"{'shape':<16} {'engine':<37} {'times':<9} {'fwd rhs':>8} {'fwd acc/rej':>12} {'bwd rhs':>8} "
              f"{'bwd acc/rej':>12}")
    print(header)
    for r in rows:
        print(f"{r['shape']:<16} {r['engine']:<37} {r['times']:<9} {r['forward_rhs']:>8} "
              f"{r['forward_accepted']:>6}/{r['forward_rejected']!s:<5} {r['backward_rhs']:>8} "
              f"{r['backward_accepted']:>6}/{r['backward_rejected']!s:<5}")
    if args.out:
        payload = {"provenance": provenance(), "command": " ".join([Path(sys.argv[0]).name, *(argv or sys.argv[1:])]),
                   "rows": rows}
        tmp = args.out.with_suffix(".tmp")
        tmp.write_text(json.dumps(payload, indent=1) + "\n")
        tmp.replace(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
