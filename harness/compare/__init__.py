"""Comparing gradient engines: cross-validation, work-precision, memory and training, from a TOML file.

    from harness.compare import run_experiment
    results = run_experiment("experiments/tutorial.toml", "out/tutorial")

One concept per module:

- `spec`       experiment files: parsing and validation into frozen values;
- `engines`    from an engine spec to a runnable engine (harness, Julia, PyTorch/JAX peers);
- `cells`      `run_cell(spec) -> dict`, the pure unit of work (picklable in, JSON-ready out);
- `runner`     the grid: expanding an experiment into cells, the resumable cell store, executors;
- `metrics`    relative errors, worst entries, cosines, matrices and work-precision curves;
- `figures`    heatmaps, work-precision, memory and training plots;
- `report`     report.md, results.json and the generated summary;
- `experiment` `run_experiment`, which strings them together;
- `cli`        the `harness compare` subcommand.
"""

from .cells import GradientCell, TrainingCell, cell_key, run_cell
from .experiment import run_experiment
from .metrics import compare_vectors, cosine_similarity, parameter_names, relative_error, worst_entry
from .runner import CellStore, InProcess, experiment_cells, run_cells
from .spec import EngineSpec, Experiment, ProblemSpec, load_experiment, parse_experiment

__all__ = [
    "CellStore",
    "EngineSpec",
    "Experiment",
    "GradientCell",
    "InProcess",
    "ProblemSpec",
    "TrainingCell",
    "cell_key",
    "compare_vectors",
    "cosine_similarity",
    "experiment_cells",
    "load_experiment",
    "parameter_names",
    "parse_experiment",
    "relative_error",
    "run_cell",
    "run_cells",
    "run_experiment",
    "worst_entry",
]
