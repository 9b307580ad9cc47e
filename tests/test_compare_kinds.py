"""Experiment kinds are a registry: a kind written outside the package runs through `run_experiment`.

The toy kind below (cost of one gradient against the batch size) is the example a user would
write: one class, one `register_kind` call, and its table in an experiment file. It also records
how many threads BLAS had inside its cells, which is how the one-thread pin of cells is checked.
"""

from dataclasses import dataclass, replace

import pytest
from threadpoolctl import threadpool_info, threadpool_limits

import harness.compare._kind as kind_registry
from harness.compare import (
    EngineSpec,
    ExperimentKind,
    ProblemSpec,
    base_record,
    load_experiment,
    parse_experiment,
    register_kind,
    run_experiment,
)
from harness.errors import HarnessInputError
from harness.problems import build_problem
from harness.sensitivity import BacksolveAdjoint, gradient


@dataclass(frozen=True)
class BatchCell:
    problem: ProblemSpec
    seed: int
    batch: int
    engine: EngineSpec = EngineSpec("harness", "BacksolveAdjoint")

    kind = "batch_cost"
    role = "batch_cost"

    def as_dict(self) -> dict:
        return {"kind": self.kind, "problem": self.problem.as_dict(), "seed": self.seed,
                "batch": self.batch, "engine": self.engine.as_dict()}


class BatchCost(ExperimentKind):
    name = "batch_cost"
    tables = ("batch_cost",)
    figures = ("batch_cost",)

    def parse(self, tables, *, problem, base):
        batches = tables["batch_cost"].get("batches")
        if not (isinstance(batches, list) and batches and all(isinstance(b, int) and b > 0
                                                              for b in batches)):
            raise HarnessInputError(f"[batch_cost] batches: expected positive integers, got {batches!r}")
        return tuple(batches)

    def cells(self, experiment, batches):
        return [BatchCell(replace(experiment.problem, batch=b), seed=0, batch=b) for b in batches]

    def run(self, cell):
        problem = build_problem(cell.problem.name, seed=cell.seed, batch=cell.batch)
        result = gradient(problem, engine=BacksolveAdjoint(rtol=1e-6, atol=1e-6), rtol=1e-6, atol=1e-6)
        record = base_record(cell, "ok")
        record.update(n_rhs=result.forward_stats.n_rhs + result.backward_stats.n_rhs,
                      blas_threads=[lib["num_threads"] for lib in threadpool_info()
                                    if lib["user_api"] == "blas"])
        return record

    def analyse(self, experiment, batches, records, problem):
        return {"batch_cost": [{"batch": r["spec"]["batch"], "n_rhs": r["n_rhs"]} for r in records]}

    def summary(self, experiment, batches, analysis):
        costs = analysis["batch_cost"]
        return [f"Batch {costs[0]['batch']} to {costs[-1]['batch']}: "
                f"{costs[0]['n_rhs']} to {costs[-1]['n_rhs']} evaluations."]

    def draw(self, experiment, batches, analysis, save):
        import matplotlib.pyplot as plt

        if "batch_cost" in experiment.figures:
            fig, ax = plt.subplots()
            ax.plot([c["batch"] for c in analysis["batch_cost"]],
                    [c["n_rhs"] for c in analysis["batch_cost"]], marker="o")
            save("batch_cost", fig, "batch_cost.png")

    def report(self, experiment, batches, analysis, written):
        return ["## Cost against batch size", ""] + [
            f"- batch {c['batch']}: {c['n_rhs']} evaluations" for c in analysis["batch_cost"]] + [""]


EXPERIMENT = """
[problem]
name = "seed"
batch = 4

[grid]
engines = ["QuadratureAdjoint"]
solvers = ["DP5"]
tolerances = [1e-6]
memory = false

[reference]
check_engine = "none"

[batch_cost]
batches = [2, 8]
"""


@pytest.fixture
def registry(monkeypatch):
    """A private copy of the kind registry, so the toy kind does not outlive its test."""
    monkeypatch.setattr(kind_registry, "_KINDS", dict(kind_registry._KINDS))
    return kind_registry


def test_a_kind_defined_here_runs_through_run_experiment(registry, tmp_path):
    path = tmp_path / "batch.toml"
    path.write_text(EXPERIMENT)
    with pytest.raises(HarnessInputError, match="unknown key.*batch_cost"):
        load_experiment(path)  # not registered yet: its table is not part of the file format
    register_kind(BatchCost())
    experiment = load_experiment(path)
    assert [name for name, _ in experiment.sections] == ["gradient", "batch_cost"]
    assert experiment.figures == ("heatmap", "work_precision", "memory", "batch_cost")

    # The caller lets BLAS use 2 threads; inside every cell it has one (see `_cells.run_cell`).
    with threadpool_limits(limits=2):
        results = run_experiment(experiment, tmp_path / "out", progress=False)
    toy = [c for c in results["cells"] if c["kind"] == "batch_cost"]
    assert [c["spec"]["batch"] for c in toy] == [2, 8]
    assert all(set(c["blas_threads"]) == {1} for c in toy)
    costs = results["batch_cost"]
    # Rows evolve independently, but the adaptive step is chosen for the whole batch: more rows
    # can only need as many or more steps, so the count cannot fall.
    assert costs[0]["n_rhs"] <= costs[1]["n_rhs"]
    assert any(line.startswith("Batch 2 to 8:") for line in results["summary"])
    report = (tmp_path / "out" / "report.md").read_text()
    assert "## Cost against batch size" in report and "## Every engine against the reference" in report
    assert results["figures"]["batch_cost"] == ["batch_cost.png"]
    assert (tmp_path / "out" / "batch_cost.png").stat().st_size > 0
    assert len(list((tmp_path / "out" / "cells").glob("*.json"))) == len(results["cells"])

    with pytest.raises(HarnessInputError, match=r"\[batch_cost\] batches"):
        parse_experiment({"problem": {"name": "seed"}, "grid": {"engines": ["QuadratureAdjoint"],
                          "solvers": ["DP5"], "tolerances": [1e-6]}, "batch_cost": {"batches": [0]}})


def test_registering_a_bad_kind_says_why(registry):
    with pytest.raises(HarnessInputError, match="expected an ExperimentKind instance"):
        register_kind(BatchCost)  # the class, not an instance
    clash = type("Clash", (BatchCost,), {"name": "clash", "tables": ("grid",)})
    with pytest.raises(HarnessInputError, match=r"\['grid'\] already belong to another kind"):
        register_kind(clash())
    with pytest.raises(HarnessInputError, match="unknown experiment kind 'nope'"):
        registry.kind("nope")


def test_cells_run_blas_on_one_thread_and_give_the_caller_its_threads_back(registry, tmp_path):
    """Why: a multi-threaded BLAS sums in another order, so a gradient's last bits would depend on
    the caller's thread count (a Dask worker has one); every cell runs BLAS on one thread, also
    on a thread pool, and the caller's setting is restored afterwards."""
    from concurrent.futures import ThreadPoolExecutor

    from harness.compare._cells import run_cell

    def blas_threads():
        return {lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"}

    register_kind(BatchCost())
    path = tmp_path / "batch.toml"
    path.write_text(EXPERIMENT.replace("[2, 8]", "[2, 4, 6, 8]"))
    with threadpool_limits(limits=2):
        assert blas_threads() == {2}
        cell = BatchCell(ProblemSpec(name="seed", batch=2), seed=0, batch=2)
        assert set(run_cell(cell)["blas_threads"]) == {1}  # a cell run on its own
        assert blas_threads() == {2}
        with ThreadPoolExecutor(3) as pool:
            results = run_experiment(path, tmp_path / "out", executor=pool, progress=False)
        toy = [c for c in results["cells"] if c["kind"] == "batch_cost"]
        assert len(toy) == 4 and all(set(c["blas_threads"]) == {1} for c in toy)
        assert blas_threads() == {2}
