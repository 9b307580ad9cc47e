"""The training kind: the tutorial's training loop repeated with each engine ([training] table).

    [training]
    engines = ["BacksolveAdjoint", "InterpolatingAdjoint"]
    steps = 200          # also lr, solver, rtol, atol, log_every, seed
    augment = [0, 1]     # optional: train each engine plain and with one augmented dimension

Each engine trains from the same data and initial θ with Adam; the report compares the final
log-likelihood per datapoint, the time per step, and draws the gap to the perfect fit over training.
With `augment`, every engine trains once per augmentation (an augmented Neural ODE fits the same data
with A extra zero-started dimensions), the report adds a "Plain against augmented" table (fit and
function evaluations), and the `trajectories` figure draws the trained models' paths.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, fields, replace

import numpy as np

from .. import _memory as memory
from .._interrupts import raise_if_interrupt
from ..errors import BackendUnavailableError
from ..problems import Problem
from .._forward import SolveOptions, solve_forward
from . import _markdown as markdown
from ._cells import base_record, one_line_error, plain, prepare
from ._kind import Cell, ExperimentKind, register_kind
from .spec import EngineSpec, _check_keys, _int, _nonempty_list, _positive, _solver, parse_engine


@dataclass(frozen=True)
class TrainingSpec:
    """The same training run (the tutorial's loop) repeated with each engine."""

    engines: tuple[EngineSpec, ...]
    steps: int = 200
    lr: float = 1e-2
    solver: str = "DP5"
    rtol: float = 1e-6
    atol: float = 1e-4
    log_every: int = 10
    seed: int = 0
    augment: tuple[int, ...] | None = None  # train with each of these augmentations; None: [problem]'s


@dataclass(frozen=True)
class TrainingCell(Cell):
    """One training run (Adam, the tutorial's loop) with one engine."""

    problem: object  # ProblemSpec
    seed: int
    engine: EngineSpec
    solver: str
    rtol: float
    atol: float
    steps: int
    lr: float
    log_every: int

    kind = "training"
    role = "training"


class TrainingKind(ExperimentKind):
    name = "training"

    def claim_fields(self, t):
        return {
            "engine": None, "base_engine": tuple(e.label for e in t.engines), "augment": t.augment,
            "status": ("ok", "flagged", "failed", "unavailable"), "reason": None, "steps": None,
            **{m: None for m in ("final_loglik_per_datapoint", "perfect_loglik_per_datapoint", "gap_to_perfect",
                                 "best_gap_to_perfect", "seconds", "seconds_per_step", "n_rhs", "n_rhs_per_step",
                                 "step_seconds_median", "step_seconds_min", "step_seconds_max",
                                 "step_intervals", "observed_dim", "final_forward_n_rhs")},
        }

    def claim_rows(self, analysis):
        # a claim reads numbers, not curves
        return [{k: v for k, v in row.items() if k != "history"} for row in analysis.get("training", [])]
    tables = ("training",)
    figures = ("training", "trajectories")

    def parse(self, tables, *, problem, base):
        table, where = tables["training"], "[training]"
        names = [f.name for f in fields(TrainingSpec)]
        _check_keys(table, where, ("engines",), tuple(n for n in names if n != "engines"))
        engines = tuple(
            parse_engine(e, f"{where} engines[{i}]")
            for i, e in enumerate(_nonempty_list(table["engines"], f"{where} engines"))
        )
        return TrainingSpec(
            engines=engines,
            steps=_int(table.get("steps", 200), f"{where} steps", 0),
            lr=_positive(table.get("lr", 1e-2), f"{where} lr"),
            solver=_solver(table.get("solver", "DP5"), f"{where} solver"),
            rtol=_positive(table.get("rtol", 1e-6), f"{where} rtol"),
            atol=_positive(table.get("atol", 1e-4), f"{where} atol"),
            log_every=_int(table.get("log_every", 10), f"{where} log_every", 1),
            seed=_int(table.get("seed", 0), f"{where} seed", 0),
            augment=None if "augment" not in table else tuple(
                _int(a, f"{where} augment", 0) for a in _nonempty_list(table["augment"], f"{where} augment")
            ),
        )

    def settings_as_dict(self, t) -> dict:
        return {"training": {"engines": [e.as_dict() for e in t.engines],
                             **{f.name: getattr(t, f.name) for f in fields(TrainingSpec)
                                if f.name != "engines"}}}

    def backends(self, t) -> set[str]:
        return {e.backend for e in t.engines}

    def cells(self, experiment, t) -> list:
        variants = [experiment.problem] if t.augment is None else [
            replace(experiment.problem, augment=a) for a in t.augment]
        return [TrainingCell(problem=problem, seed=t.seed, engine=engine, solver=t.solver,
                             rtol=t.rtol, atol=t.atol, steps=t.steps, lr=t.lr, log_every=t.log_every)
                for problem in variants for engine in t.engines]

    def run(self, spec: TrainingCell) -> dict:
        from ..training import train

        try:
            problem, engine = prepare(spec)
        except BackendUnavailableError as err:
            raise_if_interrupt(err)
            return base_record(spec, "unavailable", str(err))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                with memory.allocating():
                    result = train(problem, steps=spec.steps, lr=spec.lr, engine=engine,
                                   solver=spec.solver, rtol=spec.rtol, atol=spec.atol,
                                   log_every=spec.log_every, progress=False)
            except BackendUnavailableError as err:
                raise_if_interrupt(err)
                return base_record(spec, "unavailable", str(err))
            except Exception as err:
                raise_if_interrupt(err)
                return base_record(spec, "failed", one_line_error(err))
        record = base_record(
            spec, "flagged" if caught else "ok",
            "; ".join(sorted({str(w.message) for w in caught}))[:400] or None,
        )
        record.update(
            history=plain(result.history),
            final_loglik_per_datapoint=float(result.final_loglik_per_datapoint),
            perfect_loglik_per_datapoint=float(problem.perfect_loglik_per_datapoint),
            seconds=float(result.seconds),
            seconds_per_step=float(result.seconds) / (spec.steps + 1),  # steps + 1 gradients
            n_rhs=int(result.n_rhs),
            theta=np.asarray(result.theta).tolist(),
            **_trajectories(problem, result.theta, spec),
        )
        return record

    def analyse(self, experiment, t, records, problem) -> dict:
        out = []
        for record in records:
            augment = record["spec"]["problem"].get("augment", 0)
            label = record["spec"]["engine"]["label"] + (f" (A = {augment})" if augment else "")
            entry = {"kind": "training", "engine": label, "base_engine": record["spec"]["engine"]["label"],
                     "augment": augment, "status": record["status"],
                     "reason": record["reason"], "steps": record["spec"]["steps"]}
            if record["status"] in ("ok", "flagged"):
                perfect = record["perfect_loglik_per_datapoint"]
                entry.update(
                    history=record["history"],
                    final_loglik_per_datapoint=record["final_loglik_per_datapoint"],
                    perfect_loglik_per_datapoint=perfect,
                    gap_to_perfect=perfect - record["final_loglik_per_datapoint"],
                    # Adam can spike at any step, the last included: the best logged value is the fit reached
                    best_gap_to_perfect=perfect - max(h["loglik_per_datapoint"] for h in record["history"]),
                    seconds=record["seconds"], seconds_per_step=record["seconds_per_step"],
                    n_rhs=record["n_rhs"], n_rhs_per_step=record["n_rhs"] / (record["spec"]["steps"] + 1),
                    **step_times(record["history"]),
                )
                for key in ("trajectory_times", "trajectories", "observed_dim", "final_forward_n_rhs"):
                    if key in record:  # records cached before trajectories were kept lack them
                        entry[key] = record[key]
            out.append(entry)
        return {"training": out}

    def summary(self, experiment, t, analysis) -> list[str]:
        lines = []
        runs = [r for r in analysis["training"] if "final_loglik_per_datapoint" in r]
        if runs:
            best = max(runs, key=lambda r: r["final_loglik_per_datapoint"])
            spread = best["final_loglik_per_datapoint"] - min(r["final_loglik_per_datapoint"]
                                                              for r in runs)
            lines.append(
                f"Training ({runs[0]['steps']} steps): final log-likelihood per datapoint spans "
                f"{spread:.2e} across engines (best {best['final_loglik_per_datapoint']:.4f}, "
                f"{best['engine']}; perfect fit {best['perfect_loglik_per_datapoint']:.4f}). "
                + speed_ranking(runs)
            )
        for r in analysis["training"]:
            if r["status"] == "failed":
                lines.append(f"**Training with {r['engine']} failed**: {r['reason']}")
        return lines

    def draw(self, experiment, t, analysis, save) -> None:
        from . import _figures  # matplotlib (half a second to import) only when a report is drawn

        if "training" in experiment.figures:
            save("training", _figures.training(analysis["training"]), "training.png")
        if "trajectories" in experiment.figures:
            save("trajectories", _figures.trajectories(analysis["training"]), "trajectories.png")

    def report(self, experiment, t, analysis, written) -> list[str]:
        md = ["## Training", "",
              f"Adam, lr = {t.lr:g}, {t.steps} steps, {t.solver} at rtol = {t.rtol:g}, "
              f"atol = {t.atol:g}, seed {t.seed}; the same data and initial θ for every engine. "
              "Time per step: the median, and the range (min-max), of the mean step time over each "
              "interval between logged steps (one run per engine).", ""]
        md += ["| engine | status | steps | final log-lik./datapoint | perfect fit | "
               "time per step (ms): median [min-max] | total time (s) | f evals | note |",
               "|---|---|---|---|---|---|---|---|---|"]
        for r in analysis["training"]:
            if r["status"] == "unavailable":
                continue  # said once, at the top of the report
            if "history" in r:
                md.append(markdown.row(
                    r["engine"], r["status"], r["steps"], f"{r['final_loglik_per_datapoint']:.5f}",
                    f"{r['perfect_loglik_per_datapoint']:.5f}", _ms(r), f"{r['seconds']:.2f}", r["n_rhs"],
                    (r["reason"] or "")[:120]))
            else:
                md.append(markdown.row(r["engine"], r["status"], r["steps"], *["—"] * 5,
                                       (r["reason"] or "")[:160]))
        md.append("")
        if "training" in written:
            md += ["![training](training.png)", "",
                   "Left: the gap to the perfect fit (perfect-fit log-likelihood per datapoint minus "
                   "the model's) at each logged step, on a log axis so that the final gap shows; "
                   "right: the same against wall time (one run).", ""]
        if t.augment is not None:
            md += ["### Plain against augmented", "",
                   "A is the number of augmented dimensions. f evals per training step: right-hand-side "
                   "evaluations of one gradient (forward and backward pass), averaged over the run; "
                   "f evals of the final forward pass: one solve of the trained model over the data's "
                   "interval at the training's solver settings.", ""]
            md += _augmentation_table(analysis) + [""]
        if "trajectories" in written:
            md += ["![trajectories](trajectories.png)", ""]
        return md


def _augmentation_table(analysis: dict) -> list[str]:
    """Plain against augmented training runs: the fit and what the model costs to evaluate."""
    lines = ["| engine | A | final log-lik./datapoint | gap to perfect fit | best logged gap | "
             "f evals per training step | f evals of the final forward pass |", "|---|---|---|---|---|---|---|"]
    for t in analysis["training"]:
        if "gap_to_perfect" in t:
            lines.append(markdown.row(t["engine"], t["augment"], f"{t['final_loglik_per_datapoint']:.5f}",
                                      f"{t['gap_to_perfect']:.2e}", f"{t['best_gap_to_perfect']:.2e}",
                                      f"{t['n_rhs_per_step']:.1f}", t.get("final_forward_n_rhs", "—")))
    return lines


def _trajectories(problem: Problem, theta, spec: TrainingCell, n_states: int = 40, n_times: int = 41) -> dict:
    """The trained model's paths from (up to) `n_states` initial states spread over the batch, at
    `n_times` times on [t0, t_K] with the training's solver settings, and what the final forward
    pass costs (the number of function evaluations Dupont et al. compare between plain and augmented
    models)."""
    options = SolveOptions(spec.solver, spec.rtol, spec.atol)
    times = np.linspace(problem.t0, problem.t1, n_times)[1:]
    z0 = problem.z0[np.unique(np.linspace(0, problem.batch_size - 1, n_states).astype(int))]
    fwd = solve_forward(problem.model, np.asarray(theta), z0, problem.t0, times, options)
    paths = np.concatenate((z0[None], fwd.z_at_times))  # (n_times, B', N + A)
    # the final forward pass alone (no sampling): its evaluations are the model's cost at the fit
    final = solve_forward(problem.model, np.asarray(theta), problem.z0, problem.t0, problem.times, options)
    return {"trajectory_times": [problem.t0, *times.tolist()], "trajectories": paths.tolist(),
            "observed_dim": problem.observed_dim, "final_forward_n_rhs": int(final.stats.n_rhs)}


def step_times(history: list[dict]) -> dict:
    """Time per step over each interval between logged steps: median, min and max (seconds).

    One training run gives many timed intervals; their spread is what a ranking of engines by speed
    must beat (a single total time hides it). Empty if fewer than two steps were logged.
    """
    per_step = [(b["seconds"] - a["seconds"]) / (b["step"] - a["step"])
                for a, b in zip(history, history[1:]) if b["step"] > a["step"]]
    if not per_step:
        return {}
    return {"step_seconds_median": float(np.median(per_step)), "step_seconds_min": float(min(per_step)),
            "step_seconds_max": float(max(per_step)), "step_intervals": len(per_step)}


def speed_ranking(runs: list[dict]) -> str:
    """A sentence ranking the engines by time per step, only as far as the spreads do not overlap."""
    timed = sorted((r for r in runs if "step_seconds_median" in r), key=lambda r: r["step_seconds_median"])
    if len(timed) < 2:
        return ""
    first, others = timed[0], timed[1:]
    medians = ", ".join(f"{r['engine']} {r['step_seconds_median'] * 1e3:.2f}" for r in timed)
    if all(first["step_seconds_max"] < r["step_seconds_min"] for r in others):
        return (f"Fastest per step: {first['engine']} (its slowest interval is faster than every other "
                f"engine's fastest; medians in ms: {medians}).")
    overlap = [r["engine"] for r in others if r["step_seconds_min"] <= first["step_seconds_max"]]
    return (f"No engine is fastest per step beyond the spread of its step times (medians in ms: "
            f"{medians}; {first['engine']}'s range overlaps {', '.join(overlap)}'s).")


def _ms(r: dict) -> str:
    if "step_seconds_median" not in r:
        return f"{r['seconds_per_step'] * 1e3:.1f}"
    return (f"{r['step_seconds_median'] * 1e3:.2f} [{r['step_seconds_min'] * 1e3:.2f}-"
            f"{r['step_seconds_max'] * 1e3:.2f}]")


TRAINING = register_kind(TrainingKind())
