"""`harness reproduce`: the tutorial in one command, with its settings, and a report.

Ground truth with random weights, 500 initial states uniform on [-10, 10]², t in [0, 10], atol 1e-4
(vode's default rtol 1e-6), data = ground truth at t1; a fresh model trained with Adam (lr 1e-2) for
1000 steps; the log-likelihood per datapoint every 50 steps beside the tutorial's.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable


from . import _figures as figures
from .errors import HarnessInputError
from ._forward import SolveOptions, solve_forward
from ._io import ensure_writable_dir, write_json, write_text
from .problems import load_problem
from .problems import augment_problem, seed_problem
from .problems._tutorial_exact import EXACT_NOTE, exact_table, tutorial_exact_problem
from ._provenance import provenance
from .sensitivity import resolve_engine
from .solvers import check_solver, check_tolerances
from .training import train

# The tutorial's printed log-likelihood per datapoint (TensorFlow float32 + scipy vode).
TUTORIAL_LOGLIK = dict(zip(range(0, 1001, 50), (
    -283.869, -50.833, -7.577, -2.579, -2.199, -2.061, -2.002, -1.975, -1.962, -1.955, -1.951,
    -1.949, -1.946, -1.945, -1.943, -1.941, -1.939, -1.938, -1.936, -1.934, -1.932,
)))


@dataclass(frozen=True)
class Preset:
    steps: int
    lr: float
    rtol: float
    atol: float
    description: str
    solver: str = "DP5"
    # builds the problem; None: the seed problem drawn from --seed
    problem: Callable | None = None


PRESETS = {
    "tutorial": Preset(1000, 1e-2, 1e-6, 1e-4, "the tutorial's settings"),
    # The tutorial's closing remark: more training, a tuned learning rate and tighter tolerances.
    "close-fit": Preset(4000, 3e-2, 1e-8, 1e-8, "4x the steps, lr 3e-2, rtol = atol = 1e-8"),
    # The tutorial's own draws, z0 and horizon (harness/problems/_tutorial_exact.py): its table, row
    # for row. DP8 because at the tutorial's tolerances its error is close to vode's (DP5's is ~5x).
    "tutorial-exact": Preset(1000, 1e-2, 1e-6, 1e-4, "the tutorial's TensorFlow draws, z0 and horizon 10.2; DP8",
                             solver="DP8", problem=tutorial_exact_problem),
}
# Presets whose report sets the tutorial's published table beside the harness's.
COMPARED_WITH_TUTORIAL = ("tutorial", "tutorial-exact")


def _loglik_of(problem, theta, options) -> float:
    sol = solve_forward(problem.model, theta, problem.z0, problem.t0, problem.times, options)
    return problem.loglik_per_datapoint(problem.loss_terms(sol.z_at_times)[0])


def reproduce(
    out="reports/seed",
    *,
    preset: str = "tutorial",
    steps: int | None = None,
    method: str = "BacksolveAdjoint",
    solver: str | None = None,
    rtol: float | None = None,
    atol: float | None = None,
    lr: float | None = None,
    seed: int = 0,
    problem_file=None,
    engine=None,
    augment: int = 0,
    progress: bool | None = None,
    echo=print,
) -> dict:
    """Run the tutorial and write `out`/report.md, figures and history.json. Returns the summary."""
    if preset not in PRESETS:
        raise HarnessInputError(f"unknown preset {preset!r}: expected one of {sorted(PRESETS)}")
    chosen = PRESETS[preset]
    steps = chosen.steps if steps is None else steps
    lr = chosen.lr if lr is None else lr
    rtol = chosen.rtol if rtol is None else rtol
    atol = chosen.atol if atol is None else atol
    solver = chosen.solver if solver is None else solver
    rtol, atol = check_tolerances(rtol, atol)
    engine = resolve_engine(engine if engine is not None else method)
    if engine.__class__.__module__.startswith("harness.sensitivity"):
        check_solver(solver)
    options = SolveOptions(solver, rtol, atol)
    started = time.perf_counter()
    # validate every input before the output folder is created: a mistake leaves nothing behind
    problem = load_problem(problem_file) if problem_file is not None else None
    if isinstance(augment, bool) or not isinstance(augment, int) or augment < 0:
        raise HarnessInputError(f"augment={augment!r}: expected an integer >= 0")
    out = ensure_writable_dir(out)
    if problem is not None:
        echo(f"Loaded {problem.describe()}")
    elif chosen.problem is not None:
        problem = chosen.problem()
        echo(f"Problem: {problem.describe()}")
    else:
        problem = seed_problem(seed=seed, data_options=SolveOptions("DP5", rtol, atol))
        echo(f"Problem: {problem.describe()}")
    if augment:
        problem = augment_problem(problem, augment, seed=seed + 1)
        echo(f"Fitted with {augment} augmented dimension(s): {problem.model.describe()}")
    perfect = problem.perfect_loglik_per_datapoint
    data_loglik = None
    if problem.theta_true is not None:
        data_loglik = _loglik_of(problem, problem.theta_true, options)
        echo(f"Drew {problem.batch_size} datapoints from the ground truth. "
             f"Log-likelihood (per datapoint): {data_loglik:.3f}  (perfect fit: {perfect:.3f})")
    echo(f"Training {steps} steps: {engine.name}, {solver}, rtol {rtol:g}, atol {atol:g}, Adam lr {lr:g}")

    def on_log(record):
        ref = TUTORIAL_LOGLIK.get(record["step"]) if preset in COMPARED_WITH_TUTORIAL else None
        tail = f"   tutorial: {ref:10.3f}" if ref is not None else ""
        echo(f"step: {record['step']:4d} log-likelihood (per datapoint): "
             f"{record['loglik_per_datapoint']:10.3f}{tail}")

    result = train(
        problem, steps=steps, lr=lr, engine=engine, solver=solver, rtol=rtol, atol=atol,
        checkpoint=out / "checkpoint.npz", progress=progress, on_log=on_log,
    )
    if result.resumed_from:
        echo(f"(resumed from the checkpoint at step {result.resumed_from})")
    training_seconds = result.seconds

    figure_options = SolveOptions("DP5", 1e-6, 1e-4)
    figures.random_model_grid(problem.model, figure_options, out / "random_models.png", seed=seed + 2)
    if problem.theta_true is not None and problem.model.state_dim == 2:
        figures.truth_vs_learnt(problem, result.theta, figure_options, out / "truth_vs_learnt.png")
    reference = sorted(TUTORIAL_LOGLIK.items()) if preset in COMPARED_WITH_TUTORIAL else []
    figures.training_curve(result.history, reference, perfect, out / "training_curve.png")

    final = result.final_loglik_per_datapoint
    summary = {
        "preset": preset,
        "settings": {
            "steps": steps, "lr": lr, "engine": engine.name, "engine_config": repr(engine),
            "solver": solver, "rtol": rtol, "atol": atol, "seed": seed,
            "problem": str(problem_file) if problem_file else problem.name,
            "batch": problem.batch_size, "t0": problem.t0, "times": problem.times.tolist(),
            "model": problem.model.describe(),
        },
        "seeds": ({"ground_truth_and_z0": seed, "learnt_init": seed + 1, "random_model_grid": seed + 2}
                  if chosen.problem is None else {"tutorial_draws": "its own", "random_model_grid": seed + 2}),
        "data_loglik_per_datapoint": data_loglik,
        "perfect_loglik_per_datapoint": perfect,
        "final_loglik_per_datapoint": final,
        "gap_to_perfect": final - perfect,
        "training_seconds": training_seconds,
        "total_seconds": time.perf_counter() - started,
        "n_rhs": result.n_rhs,
        "history": result.history,
        "theta": result.theta,
        "provenance": provenance(),
    }
    write_json(out / "history.json", summary)
    write_text(out / "report.md", _report(summary, reference, problem))
    echo(f"Final log-likelihood per datapoint {final:.4f} (perfect {perfect:.4f}, gap {final - perfect:.4f}); "
         f"training {training_seconds:.1f} s, total {summary['total_seconds']:.1f} s")
    echo(f"Wrote {out / 'report.md'}")
    return summary


def _report(summary, reference, problem) -> str:
    s = summary["settings"]
    ref = dict(reference)
    lines = [
        "# Neural ODE trained with adjoint gradients: the tutorial, reproduced",
        "",
        f"Problem: {problem.describe()}.",
        f"Training: {s['steps']} Adam steps, lr {s['lr']:g}; gradients by {s['engine']} with {s['solver']} "
        f"(rtol {s['rtol']:g}, atol {s['atol']:g}); seed {s['seed']} (preset `{summary['preset']}`).",
        "",
    ]
    if summary["data_loglik_per_datapoint"] is not None:
        lines += [f"The ground truth scores {summary['data_loglik_per_datapoint']:.3f} per datapoint on its "
                  f"own data (a perfect fit is -log 2π = {summary['perfect_loglik_per_datapoint']:.3f}).", ""]
    if summary["preset"] == "tutorial-exact":
        lines += exact_table(summary["history"], ref)
    else:
        lines += ["| step | harness | tutorial |", "|---:|---:|---:|"]
        for record in summary["history"]:
            tut = ref.get(record["step"])
            lines.append(f"| {record['step']} | {record['loglik_per_datapoint']:.3f} | "
                         f"{'' if tut is None else f'{tut:.3f}'} |")
    lines += [
        "",
        f"Final: {summary['final_loglik_per_datapoint']:.4f}, {summary['gap_to_perfect']:.4f} from the perfect fit; "
        f"training took {summary['training_seconds']:.1f} s ({summary['n_rhs']} right-hand-side evaluations).",
        "",
        EXACT_NOTE if summary["preset"] == "tutorial-exact" else
        "The tutorial's numbers come from TensorFlow in float32 with scipy's `vode` and weights drawn "
        "from TensorFlow's generator, so the two columns follow the same course, not the same digits.",
        "",
        "## Figures",
        "",
        "![Training curve](training_curve.png)",
        "",
        "![Ground truth and learnt model](truth_vs_learnt.png)",
        "",
        "![Random models](random_models.png)",
        "",
    ]
    return "\n".join(lines)


__all__ = ["PRESETS", "TUTORIAL_LOGLIK", "reproduce"]
