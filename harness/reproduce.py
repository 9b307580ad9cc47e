"""`harness reproduce`: the tutorial in one command, with its settings, and a report.

Ground truth with random weights, 500 initial states uniform on [-10, 10]², t in [0, 10], atol 1e-4
(vode's default rtol 1e-6), data = ground truth at t1; a fresh model trained with Adam (lr 1e-2) for
1000 steps; the log-likelihood per datapoint every 50 steps beside the tutorial's.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from .errors import HarnessInputError, TrainingDivergedError
from ._forward import SolveOptions, solve_forward
from ._io import output_folder, write_json, write_text
from ._memory_budget import check_gradient_memory
from .problems import load_problem
from .problems import augment_problem, seed_problem
from .problems._tutorial_exact import EXACT_NOTE, exact_table, tutorial_exact_problem
from ._provenance import provenance
from .sensitivity import resolve_engine, uses_harness_solvers
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
    out="runs/seed",
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
    """Run the tutorial (or a problem file) and write `out`/report.md, figures and history.json.

    The checkpoint in `out` is removed only once every output is written, so an interrupt at any
    point loses nothing: the same call resumes and ends where an uninterrupted run ends.

    Returns
    -------
    dict
        The summary written to history.json.

    Raises
    ------
    TrainingDivergedError
        After writing the report with status "diverged", when training stopped at a step whose loss
        or gradient was not finite; the checkpoint of the steps before it is kept.
    """
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
    if uses_harness_solvers(engine):
        check_solver(solver)
    options = SolveOptions(solver, rtol, atol)
    started = time.perf_counter()
    # validate every input before the output folder is created: a mistake leaves nothing behind
    problem = load_problem(problem_file) if problem_file is not None else None
    if isinstance(augment, bool) or not isinstance(augment, int) or augment < 0:
        raise HarnessInputError(f"augment={augment!r}: expected an integer >= 0")
    # an input error found once the folder exists (an augmented file augmented again, a refusal at
    # the first step) removes the folder again, if this run created it
    with output_folder(out) as out:
        # taken before anything is written: rerunning into a tracked folder (the shipped reports) must not
        # record the commit as "+dirty" because of the files this run rewrites
        run_provenance = provenance()
        tutorial = problem is None  # the tutorial's own problem: its printed numbers are a fair comparison
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
        check_gradient_memory(problem, engine, solver)  # refused with the number needed, before allocating
        perfect = problem.perfect_loglik_per_datapoint
        data_loglik = None
        if problem.theta_true is not None:
            data_loglik = _loglik_of(problem, problem.theta_true, options)
            source = f"Drew {problem.batch_size} datapoints from the ground truth" if tutorial else \
                "The file's ground truth on its own data"
            echo(f"{source}. Log-likelihood (per datapoint): {data_loglik:.3f}  (perfect fit: {perfect:.3f})")
        echo(f"Training {steps} steps: {engine.name}, {solver}, rtol {rtol:g}, atol {atol:g}, Adam lr {lr:g}")
        show_tutorial = tutorial and preset in COMPARED_WITH_TUTORIAL

        def on_log(record):
            ref = TUTORIAL_LOGLIK.get(record["step"]) if show_tutorial else None
            tail = f"   tutorial: {ref:10.3f}" if ref is not None else ""
            echo(f"step: {record['step']:4d} log-likelihood (per datapoint): "
                 f"{record['loglik_per_datapoint']:10.3f}{tail}")

        checkpoint = out / "checkpoint.npz"
        # training warnings (overflow in a diverging step) are not shown raw: a non-finite loss or
        # gradient ends training with status "diverged" and one line saying at which step
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            try:
                result = train(
                    problem, steps=steps, lr=lr, engine=engine, solver=solver, rtol=rtol, atol=atol,
                    checkpoint=checkpoint, keep_checkpoint=True, progress=progress, on_log=on_log,
                    on_notice=echo,
                )
            except TrainingDivergedError as err:
                result = err.result  # the steps before the divergence: reported, then the error again
        if result.resumed_from is not None and result.resumed_from > steps:
            echo("(resumed from the checkpoint of the finished training: only the outputs were left to write)")
        elif result.resumed_from:
            echo(f"(resumed from the checkpoint at step {result.resumed_from})")
        training_seconds = result.seconds
        diverged = result.status != "finished"

        echo(f"Writing the figures and the report to {out}")
        # matplotlib (half a second to import) only here: the command line builds its parser from this
        # module's presets, and every other command and every refused input would pay for it
        from . import _reproduce_figures as figures

        figure_options = SolveOptions("DP5", 1e-6, 1e-4)
        figures.random_model_grid(problem.model, figure_options, out / "random_models.png", seed=seed + 2)
        phase_plot = problem.theta_true is not None and problem.model.state_dim == 2 and not diverged
        if phase_plot:
            figures.truth_vs_learnt(problem, result.theta, figure_options, out / "truth_vs_learnt.png")
        reference = sorted(TUTORIAL_LOGLIK.items()) if show_tutorial else []
        figures.training_curve(result.history, reference, perfect, out / "training_curve.png")

        final = result.final_loglik_per_datapoint
        summary = {
            "status": result.status,
            "failure": result.failure,
            "preset": preset,
            "settings": {
                "steps": steps, "lr": lr, "engine": engine.name, "engine_config": repr(engine),
                "solver": solver, "rtol": rtol, "atol": atol, "seed": seed,
                "problem": str(problem_file) if problem_file else problem.name, "problem_name": problem.name,
                "batch": problem.batch_size, "t0": problem.t0, "times": problem.times.tolist(),
                "model": problem.model.describe(),
            },
            "seeds": ({"random_model_grid": seed + 2} if not tutorial else
                      {"tutorial_draws": "its own", "random_model_grid": seed + 2} if chosen.problem is not None else
                      {"ground_truth_and_z0": seed, "learnt_init": seed + 1, "random_model_grid": seed + 2}),
            "data_loglik_per_datapoint": data_loglik,
            "perfect_loglik_per_datapoint": perfect,
            "final_loglik_per_datapoint": final,
            "gap_to_perfect": None if final is None else final - perfect,
            "training_seconds": training_seconds,
            "total_seconds": time.perf_counter() - started,
            "n_rhs": result.n_rhs,
            "history": result.history,
            "theta": result.theta,
            "provenance": run_provenance,
        }
        write_json(out / "history.json", summary)
        write_text(out / "report.md", _report(summary, reference, problem, tutorial, phase_plot))
        if diverged:
            # kept: it holds the steps before the divergence, and a rerun with the same settings ends here
            failure = result.failure
            remedy = (f"lower --lr (now {lr:g})" if failure["step"] > 0 else
                      "the starting point already fails, so the problem (its scale, its data) or the tolerances "
                      "need a look, not the learning rate")
            raise TrainingDivergedError(
                f"training diverged at step {failure['step']}: {failure['reason']}; {remedy}. "
                f"Report: {out / 'report.md'}"
            )
        checkpoint.unlink(missing_ok=True)  # every output is written: nothing left to resume
        gap = final - perfect
        echo(f"Final log-likelihood per datapoint {final:.4f} (perfect {perfect:.4f}, gap {gap:.4f}); "
             f"training {training_seconds:.1f} s, total {summary['total_seconds']:.1f} s")
        echo(f"Wrote {out / 'report.md'}")
        return summary


def _fmt(value, spec: str = ".4f") -> str:
    return "n/a" if value is None else format(value, spec)


# Two runs whose distances to the perfect fit differ by more than this factor at a step are said to
# be apart there: within it, they are on the same course as far as a reader of the table can tell.
APART = 2.0


def course_comparison(history, reference: dict, perfect: float) -> str:
    """What the table's two columns show, computed from them: how far apart the runs are.

    Each column is measured by its distance to the perfect fit (perfect - log-likelihood), and the
    runs are compared by the ratio of those distances at every step both logged: the sentence names
    the largest ratio (either way), the steps where they are more than `APART` times apart, and the
    last shared step. It replaces a fixed sentence that said the columns follow the same course
    while they were, for this seed, an order of magnitude apart for hundreds of steps.
    """
    cause = ("The tutorial's numbers come from TensorFlow in float32 with scipy's `vode` and weights drawn "
             "from TensorFlow's generator, so the two runs start from different models.")
    pairs = []
    for record in history:
        ours, theirs = record.get("loglik_per_datapoint"), reference.get(record["step"])
        if ours is None or theirs is None:
            continue
        gap_ours, gap_theirs = perfect - ours, perfect - theirs
        if gap_ours > 0 and gap_theirs > 0:
            pairs.append((record["step"], gap_ours, gap_theirs, max(gap_ours / gap_theirs, gap_theirs / gap_ours)))
    if not pairs:
        return cause
    step, gap_ours, gap_theirs, factor = max(pairs, key=lambda p: p[3])
    apart = [p[0] for p in pairs if p[3] > APART]
    last = pairs[-1]
    first = (f"Measured by the distance to the perfect fit, the two columns differ most at step {step}: "
             f"{gap_ours:.3g} here against {gap_theirs:.3g} in the tutorial, {factor:.1f} times apart")
    if apart:
        course = (f"; they are more than {APART:g} times apart at {len(apart)} of the {len(pairs)} logged steps "
                  f"(from step {apart[0]} to step {apart[-1]}), so they do not follow the same course")
    else:
        course = (f"; at every one of the {len(pairs)} logged steps they are within {APART:g} times of each other, "
                  "the same course in other digits")
    end = f". At step {last[0]}: {last[1]:.3g} against {last[2]:.3g}."
    return f"{cause} {first}{course}{end}"


def _report(summary, reference, problem, tutorial: bool, phase_plot: bool) -> str:
    s = summary["settings"]
    ref = dict(reference)
    title = ("Neural ODE trained with adjoint gradients: the tutorial, reproduced" if tutorial else
             f"Neural ODE trained with adjoint gradients: problem `{problem.name}`")
    times = ", ".join(f"{t:g}" for t in problem.times)
    lines = [
        f"# {title}",
        "",
        f"Problem: {problem.describe()}; observed at t = {times} (from t0 = {problem.t0:g}).",
        f"Training: {s['steps']} Adam steps, lr {s['lr']:g}; gradients by {s['engine']} with {s['solver']} "
        f"(rtol {s['rtol']:g}, atol {s['atol']:g}); "
        + (f"seed {s['seed']} (preset `{summary['preset']}`)." if tutorial else
           f"the file's initial θ (preset `{summary['preset']}`; seed {s['seed']} draws only the random models)."),
        "",
    ]
    if summary["status"] != "finished":
        failure = summary["failure"]
        lines += [f"**Status: {summary['status']}** at step {failure['step']}: {failure['reason']}. "
                  "The numbers below are those of the steps before it"
                  + ("; a lower learning rate is the usual remedy." if failure["step"] > 0 else "."), ""]
    if summary["data_loglik_per_datapoint"] is not None:
        whose = "The ground truth" if tutorial else "The file's ground truth"
        lines += [(f"{whose} scores {_fmt(summary['data_loglik_per_datapoint'], '.3f')} per datapoint on its "
                   f"own data (a perfect fit is -log 2π = {summary['perfect_loglik_per_datapoint']:.3f})."), ""]
    exact = summary["preset"] == "tutorial-exact"
    if exact:
        lines += exact_table(summary["history"], ref)
    else:
        if ref:
            lines += ["| step | harness | tutorial |", "|---:|---:|---:|"]
        else:
            lines += ["| step | log-likelihood per datapoint |", "|---:|---:|"]
        for record in summary["history"]:
            row = f"| {record['step']} | {_fmt(record['loglik_per_datapoint'], '.3f')} |"
            if ref:
                tut = ref.get(record["step"])
                row += f" {'' if tut is None else f'{tut:.3f}'} |"
            lines.append(row)
    lines += [
        "",
        (f"Final: {_fmt(summary['final_loglik_per_datapoint'])}, {_fmt(summary['gap_to_perfect'])} from the "
         f"perfect fit; training took {summary['training_seconds']:.1f} s ({summary['n_rhs']} right-hand-side "
         "evaluations)."),
        "",
    ]
    if exact:
        lines += [EXACT_NOTE, ""]
    elif ref:
        lines += [course_comparison(summary["history"], ref, summary["perfect_loglik_per_datapoint"]), ""]
    lines += ["## Figures", "", "![Training curve](training_curve.png)", ""]
    if phase_plot:
        lines += ["![Ground truth and learnt model](truth_vs_learnt.png)", ""]
    lines += ["![Random models](random_models.png)", ""]
    return "\n".join(lines)


__all__ = ["PRESETS", "TUTORIAL_LOGLIK", "reproduce"]
