"""A small comparison grid run on a local Dask cluster, with a declared claim checked.

Three adjoints x two tolerances on the seed problem with 8 initial states, against forward
sensitivities, on 2 local worker processes (127.0.0.1, no dashboard). The report, results.json and
the finished cells go to OUT (default: a temporary folder); running it again with the same OUT
resumes instead of recomputing.

    python examples/compare_on_dask.py [--out OUT] [--workers 2]

Needs the dask extra (pip install -e ".[dask]").
"""

import argparse
import tempfile
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

from harness.compare import DaskExecutor, parse_experiment, run_experiment

GRID = """
title = "Three adjoints on Dask"

[problem]
name = "seed"
batch = 8

[grid]
engines = ["BacksolveAdjoint", "InterpolatingAdjoint", "QuadratureAdjoint"]
solvers = ["DP5"]
tolerances = [1e-4, 1e-6]
memory = false

[reference]
engine = "ForwardSensitivity"
solver = "DP8"
rtol = 1e-10
atol = 1e-10

[plots]
figures = ["heatmap"]

[[claims]]
says = "every adjoint is within 100x rtol of the reference"
every = { backend = ["harness"] }
status = "ok"
metric = "dtheta.relative_error"
per = "rtol"
at_most = 100
"""


def main(out: str | None = None, workers: int = 2) -> dict:
    out = Path(out or tempfile.mkdtemp(prefix="harness-dask-"))
    experiment = parse_experiment(tomllib.loads(GRID))
    with DaskExecutor(workers=workers) as executor:
        results = run_experiment(experiment, out, executor=executor, progress=False)
    for claim in results["claims"]:
        print(f"{'✓' if claim['holds'] else '✗'} {claim['says']} ({claim['evidence']})")
    print(f"{results['timing']['executor']}; report: {out / 'report.md'}")
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    main(args.out, args.workers)
