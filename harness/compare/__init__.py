"""Comparing gradient engines: cross-validation, work-precision, memory and training, from a TOML file.

    from harness.compare import run_experiment
    results = run_experiment("experiments/tutorial.toml", "out/tutorial")

The public surface is what this module exports; every `_`-prefixed module behind it may change.

- `run_experiment`, `load_experiment`, `parse_experiment`, `Experiment`: run or read an experiment;
- `DaskExecutor`: run its cells on a Dask cluster (needs the `dask` extra; imported on first use);
- `ExperimentKind`, `register_kind`, `registered_kinds`: the kinds of comparison an experiment file
  can hold. A new kind (say, cost against batch size) is one module: a subclass of `ExperimentKind`
  supplying its TOML table's parsing, its cells, their run, its analysis, summary, report section
  and figures, and one `register_kind(MyKind())`. `base_record` and `one_line_error` give its
  records the common fields; `EngineSpec` and `ProblemSpec` are what its cells may hold.

Inside, one concept per module: `spec` (the file format's common part and engine entries),
`engines` (an engine spec to a runnable engine), `_kind` (the kind protocol and registry),
`_gradient`, `_training` and `_otd_vs_dto` (the built-in kinds;
`_dto_figures` draws the last), `_cells` (what every cell shares),
`_runner` (the resumable cell store and executors), `harness._metrics` (distances between gradients),
`_figures`, `_report`, `_experiment` (`run_experiment`), `_dask`, and `cli` (`harness compare`).
"""

from . import _gradient, _training, _otd_vs_dto  # noqa: F401 - registers the built-in kinds
from ._cells import base_record, one_line_error
from ._experiment import run_experiment
from ._kind import ExperimentKind, register_kind, registered_kinds
from .spec import EngineSpec, Experiment, ProblemSpec, load_experiment, parse_experiment


def __getattr__(name):
    # Dask is optional: importing harness.compare must not need it.
    if name == "DaskExecutor":
        from ._dask import DaskExecutor

        return DaskExecutor
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "DaskExecutor",
    "EngineSpec",
    "Experiment",
    "ExperimentKind",
    "ProblemSpec",
    "base_record",
    "load_experiment",
    "one_line_error",
    "parse_experiment",
    "register_kind",
    "registered_kinds",
    "run_experiment",
]
