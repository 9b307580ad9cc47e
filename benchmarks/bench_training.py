"""Training the tutorial's problem (1000 Adam steps): harness (compiled and numpy) against diffrax and
torchdiffeq, side by side in one run, plus the wall time of the whole `harness reproduce`.

Usage:
    python benchmarks/bench_training.py [--steps 1000] [--repeats 3] [--quick] [--out reports/training]
                                        [--frameworks COLUMN ...] [--torch-steps N] [--no-reproduce]

The problem is the one `harness reproduce` trains (the seed problem of seed 0: MLP 2-3-2 tanh, 500
initial states, t in [0, 10], data at t1 = 10 drawn with DP5 at the preset's tolerances) with the
preset's settings (`harness.reproduce.PRESETS["tutorial"]`: BacksolveAdjoint, DP5, rtol 1e-6,
atol 1e-4, Adam lr 1e-2), written once to a problem file that every framework reads, so all start
from the same θ and fit the same data. Each framework runs in its own fresh process:

- harness compiled: `harness.training.train` in the default mode (the compiled path where its
  automatic rules choose it); harness numpy: the same with HARNESS_COMPILED=0;
- diffrax Dopri5 with BacksolveAdjoint and with RecursiveCheckpointAdjoint: the peer adapter's
  compiled loss (`harness/peers/diffrax_engine.py`), value_and_grad and the harness's Adam update
  written in JAX, jit-compiled together as one step;
- torchdiffeq dopri5 `odeint_adjoint` on the peer adapter's vector field, with torch's Adam (the
  same formula as the harness's, ε = 1e-7 as in TensorFlow).

Every framework makes steps + 1 evaluations and `steps` updates, as `train` does (the last
evaluation scores the final θ). Two untimed evaluations at the initial θ come first: the first one's
excess over the second is reported apart as compilation (XLA's for diffrax; loading numba's kernels
from the disk cache for the compiled harness; torch's autograd warm-up). The excess is taken over a
call at the same θ, not over the mean training step, because the solves' cost moves as the field is
fitted (on the preset's problem 93 f-evaluations a gradient at θ0, 109 on average over training).
The columns run in `--repeats` rounds (default 3; torchdiffeq, minutes a run, once) and each shows
its median run; `harness reproduce` likewise, with its wall time split into phases from the moments
its progress lines arrive. Prints the CPU and the load average, and writes `results.json` and
`table.md` to `--out`, atomically.

The final log-likelihoods agree across frameworks to the solvers' tolerance, not to rounding: each
framework's step-size controller takes its own steps, so each gradient differs from the others at
the tolerance's level, and Adam, over 1000 steps, follows slightly different paths;
RecursiveCheckpointAdjoint differentiates the discrete solve rather than the continuous adjoint, a
further difference of the same order. The two harness columns run the same step sequence and agree
to rounding.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from harness._provenance import cpu_model  # standard library only: the launcher imports no numpy

ROOT = Path(__file__).resolve().parents[1]
LOG_EVERY = 50  # as `harness reproduce` logs

# column -> (worker framework, method)
COLUMNS = {
    "harness compiled": ("harness-compiled", "BacksolveAdjoint"),
    "harness numpy": ("harness-numpy", "BacksolveAdjoint"),
    "diffrax Backsolve": ("diffrax", "BacksolveAdjoint"),
    "diffrax RecursiveCheckpoint": ("diffrax", "RecursiveCheckpointAdjoint"),
    "torchdiffeq adjoint": ("torchdiffeq", "odeint_adjoint"),
}
HARNESS_COLUMNS = ("harness compiled", "harness numpy")
DIFFRAX_COLUMNS = ("diffrax Backsolve", "diffrax RecursiveCheckpoint")


def _settings():
    from harness.reproduce import PRESETS

    return PRESETS["tutorial"]


def _logged(step: int, steps: int) -> bool:
    return step % LOG_EVERY == 0 or step == steps


# --------------------------------------------------------------------------------------- workers
def _harness_worker(method: str, problem_path: str, steps: int) -> dict:
    import harness._compiled as compiled
    from harness.problems import load_problem
    from harness.sensitivity import gradient
    from harness.training import train

    preset = _settings()
    problem = load_problem(problem_path)
    options = dict(engine=method, solver=preset.solver, rtol=preset.rtol, atol=preset.atol)
    first, second = _first_two(lambda: gradient(problem, problem.theta, **options))
    runs_before = compiled.loop_runs()
    result = train(problem, steps=steps, lr=preset.lr, log_every=LOG_EVERY, progress=False, **options)
    history = [(r["step"], r["loglik_per_datapoint"]) for r in result.history]
    note = compiled.status(problem.model, problem.batch_size)
    if compiled.loop_runs() > runs_before:
        note += f"; the whole compiled loop ran {compiled.loop_runs() - runs_before} of the {steps + 1} gradients"
    return {"first_call": first, "second_call": second, "training": result.seconds, "history": history,
            "n_rhs": result.n_rhs, "note": note}


def _first_two(evaluate) -> tuple[float, float]:
    """Wall times of two calls at the same input: the first pays the one-time costs (compilation,
    loading cached kernels, warming autograd), the second is an ordinary step at that θ."""
    times = []
    for _ in range(2):
        started = time.perf_counter()
        evaluate()
        times.append(time.perf_counter() - started)
    return times[0], times[1]


def _adam_constants():
    from harness.training import Adam

    adam = Adam(lr=_settings().lr)
    return adam.lr, adam.beta1, adam.beta2, adam.eps


def _diffrax_worker(method: str, problem_path: str, steps: int) -> dict:
    from harness.peers import diffrax_engine as adapter
    from harness.problems import load_problem

    import jax
    import jax.numpy as jnp

    preset = _settings()
    problem = load_problem(problem_path)
    model = problem.model
    solver = adapter.check_solver("diffrax", preset.solver, adapter.SOLVERS)
    # the adapter's loss and its jitted value_and_grad with respect to (parameters, z0), uncounted
    decay = None if model.decay is None else tuple(float(d) for d in model.decay)
    value_and_grad = adapter._compiled(model.widths, model.activation, decay, method, solver, solver, False)[0]
    lr, beta1, beta2, eps = _adam_constants()

    def adam(p, g, m, v, t):  # harness.training.Adam.step, term for term
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g * g
        m_hat = m / (1 - beta1**t)
        v_hat = v / (1 - beta2**t)
        return p - lr * m_hat / (jnp.sqrt(v_hat) + eps), m, v

    @jax.jit
    def step(params, m, v, t, z0, t0, times, tols, data):
        loss, (grads, _dz0) = value_and_grad(params, z0, t0, times, tols, data)
        t = t + 1
        updated = [adam(*args, t) for args in zip(params, grads, m, v, strict=True)]
        return loss, tuple(u[0] for u in updated), tuple(u[1] for u in updated), tuple(u[2] for u in updated), t

    weights = model.unflatten(problem.theta)
    params = tuple(jnp.asarray(weights[n]) for n in model.parameter_names)
    zeros = tuple(jnp.zeros_like(p) for p in params)
    # backward solve with the forward's solver and tolerances, as the harness's BacksolveAdjoint
    tols = jnp.asarray([preset.rtol, preset.atol, preset.rtol, preset.atol])
    fixed = (jnp.asarray(problem.z0), jnp.asarray(problem.t0), jnp.asarray(problem.times), tols,
             jnp.asarray(problem.data))
    n = problem.n_datapoints

    # the first call compiles; neither is part of training, which starts afresh from θ0
    first, second = _first_two(lambda: jax.block_until_ready(step(params, zeros, zeros, jnp.asarray(0.0), *fixed)))

    history = []
    state = (params, zeros, zeros, jnp.asarray(0.0))
    started = time.perf_counter()
    for k in range(steps + 1):
        loss, *updated = step(*state, *fixed)
        if _logged(k, steps):
            history.append((k, -float(loss) / n))  # float() waits for the step, as the harness's does
        if k < steps:
            state = tuple(updated)
    jax.block_until_ready(loss)
    training = time.perf_counter() - started
    if not all(math.isfinite(h[1]) for h in history):
        raise FloatingPointError(f"diffrax {method}: a non-finite loss during training")
    return {"first_call": first, "second_call": second, "training": training, "history": history,
            "note": f"jax {jax.__version__}"}


def _torchdiffeq_worker(method: str, problem_path: str, steps: int) -> dict:
    from harness.peers import torchdiffeq_engine as adapter
    from harness.problems import load_problem

    import torch
    import torchdiffeq

    # one thread, as the adapter runs it: the tensors are small and torch's pool spin-waits
    torch.set_num_threads(1)
    preset = _settings()
    problem = load_problem(problem_path)
    field = adapter.MLPField(problem.model, problem.theta)
    lr, beta1, beta2, eps = _adam_constants()
    optimiser = torch.optim.Adam(field.parameters(), lr=lr, betas=(beta1, beta2), eps=eps)
    z0 = torch.tensor(problem.z0, dtype=torch.float64)
    t = torch.tensor([problem.t0, *problem.times], dtype=torch.float64)
    data = torch.tensor(problem.data, dtype=torch.float64)
    dopri5 = adapter.check_solver("torchdiffeq", preset.solver, adapter.SOLVERS)
    constant = 0.5 * problem.model.state_dim * math.log(2 * math.pi) * problem.n_datapoints

    def evaluate() -> float:
        """The adapter's loss and its gradient into the parameters' .grad."""
        z = torchdiffeq.odeint_adjoint(
            field, z0, t, method=dopri5, rtol=preset.rtol, atol=preset.atol, adjoint_method=dopri5,
            adjoint_rtol=preset.rtol, adjoint_atol=preset.atol, adjoint_params=tuple(field.parameters()))
        loss = 0.5 * torch.sum((z[1:] - data) ** 2) + constant
        optimiser.zero_grad()
        loss.backward()
        return float(loss.detach())

    # torch's first backward pass starts its autograd machinery; neither call is part of training
    first, second = _first_two(evaluate)
    history = []
    started = time.perf_counter()
    for k in range(steps + 1):
        loss = evaluate()
        if _logged(k, steps):
            history.append((k, -loss / problem.n_datapoints))
        if k < steps:
            optimiser.step()
    training = time.perf_counter() - started
    return {"first_call": first, "second_call": second, "training": training, "history": history,
            "note": f"torch {torch.__version__}"}


WORKERS = {"harness-compiled": _harness_worker, "harness-numpy": _harness_worker,
           "diffrax": _diffrax_worker, "torchdiffeq": _torchdiffeq_worker}


def _run_worker(framework: str, method: str, problem_path: Path, steps: int) -> dict | None:
    env = {k: v for k, v in os.environ.items() if k != "HARNESS_COMPILED"}
    if framework == "harness-numpy":
        env["HARNESS_COMPILED"] = "0"
    cmd = [sys.executable, __file__, "--worker", framework, method, str(problem_path), "--steps", str(steps)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["?"])[-1]
        print(f"  {framework} {method}: failed ({last})", file=sys.stderr, flush=True)
        return None
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    evaluations = steps + 1
    result["steps"] = steps
    result["per_step"] = result["training"] / evaluations
    # compilation (or the first call's other one-time costs): its excess over the same call again
    result["compile"] = max(0.0, result["first_call"] - result["second_call"])
    result["initial_loglik"] = result["history"][0][1]
    result["final_loglik"] = result["history"][-1][1]
    return result


def _available(framework: str) -> bool:
    import importlib.util

    modules = {"diffrax": ("jax", "diffrax"), "torchdiffeq": ("torch", "torchdiffeq"),
               "harness-compiled": ("numba",)}.get(framework, ())
    return all(importlib.util.find_spec(m) is not None for m in modules)


def _harness_command() -> list[str]:
    """The `harness` console script of this interpreter's environment (what a user types)."""
    script = Path(sys.executable).with_name("harness")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "import sys; from harness.cli import main; sys.exit(main())"]


# what `harness reproduce` prints as it enters each phase -> the phase that line ends
PHASE_ENDS = (("Problem:", "start-up: imports, drawing the data"),
              ("Training ", "the ground truth's log-likelihood"),
              ("Writing the figures", "training"),
              ("Final log-likelihood", "figures and report"))


def _reproduce(steps: int, default_steps: int) -> dict | None:
    """Wall time of the whole `harness reproduce` (default preset) in a fresh process, and of its
    phases, from the moment each of its progress lines arrives."""
    with tempfile.TemporaryDirectory(prefix="bench-training-reproduce-") as folder:
        out = Path(folder) / "run"
        cmd = [*_harness_command(), "reproduce", "--out", str(out)]
        if steps != default_steps:
            cmd += ["--steps", str(steps)]
        env = {k: v for k, v in os.environ.items() if k != "HARNESS_COMPILED"}
        env["PYTHONUNBUFFERED"] = "1"
        phases, marks = {}, []
        started = time.perf_counter()
        with subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              cwd=folder) as proc:
            for line in proc.stdout:
                now = time.perf_counter()
                for prefix, phase in PHASE_ENDS:
                    if line.startswith(prefix) and phase not in phases:
                        phases[phase] = now - (marks[-1] if marks else started)
                        marks.append(now)
            stderr = proc.stderr.read()
        ended = time.perf_counter()
        wall = ended - started
        if proc.returncode != 0:
            last = (stderr.strip().splitlines() or ["?"])[-1]
            print(f"  harness reproduce: failed ({last})", file=sys.stderr, flush=True)
            return None
        if marks:
            phases["exit"] = ended - marks[-1]
        summary = json.loads((out / "history.json").read_text())
    return {"wall": wall, "steps": steps, "training": summary["training_seconds"],
            "total_inside": summary["total_seconds"], "final_loglik": summary["final_loglik_per_datapoint"],
            "phases": phases,
            "command": "harness reproduce --out <folder>" + ("" if steps == default_steps else f" --steps {steps}")}


def _median_run(runs: list[dict], key: str) -> dict | None:
    """The run whose `key` is the median (the lower one of an even count), with every run's value."""
    if not runs:
        return None
    ordered = sorted(runs, key=lambda r: r[key])
    chosen = dict(ordered[(len(ordered) - 1) // 2])
    chosen["runs"] = len(runs)
    chosen[f"{key}_of_each_run"] = [r[key] for r in runs]
    if all("round" in r for r in runs):
        chosen["per_step_of_each_round"] = {r["round"]: r["training"] / (r["steps"] + 1) for r in runs}
    return chosen


# ------------------------------------------------------------------------------------------ table
def _seconds(value) -> str:
    return "—" if value is None else (f"{value:.2f} s" if value < 10 else f"{value:.1f} s")


def _paired_ratio(result: dict, reference: dict | None) -> str:
    """The median over rounds of the two columns' ratio of time per training step in that round:
    runs of one round ran minutes apart, under much the same load from other processes."""
    if reference is None:
        return "—"
    mine, theirs = result["per_step_of_each_round"], reference["per_step_of_each_round"]
    ratios = sorted(mine[k] / theirs[k] for k in mine if k in theirs)
    return "—" if not ratios else f"{ratios[(len(ratios) - 1) // 2]:.2f}"


def _table(results: dict, steps: int) -> list[str]:
    lines = [f"| framework | training ({steps} steps) | per step | compilation (first call's excess) "
             "| final log-likelihood per datapoint | ÷ diffrax Backsolve "
             "| ÷ diffrax RecursiveCheckpoint |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    references = [results.get(c) for c in DIFFRAX_COLUMNS]
    for column in results:
        r = results[column]
        if r is None:
            lines.append(f"| {column} | — | — | — | — | — | — |")
            continue
        training = r["training"] * steps / r["steps"]  # scaled only when the column ran fewer steps
        scaled = "" if r["steps"] == steps else f" (scaled from {r['steps']} steps)"
        final = f"{r['final_loglik']:.6f}" + ("" if r["steps"] == steps else f" (at step {r['steps']})")
        ratios = [_paired_ratio(r, ref) for ref in references]
        lines.append(f"| {column} | {_seconds(training)}{scaled} | {r['per_step'] * 1e3:.2f} ms "
                     f"| {_seconds(r['compile'])} | {final} | " + " | ".join(ratios) + " |")
    return lines


def _agreement(results: dict, steps: int) -> list[str]:
    """How far each column's final log-likelihood is from the compiled harness's."""
    base = results.get("harness compiled")
    if base is None:
        return []
    lines = []
    for column, r in results.items():
        if r is None or column == "harness compiled" or r["steps"] != steps:
            continue
        diff = r["final_loglik"] - base["final_loglik"]
        lines.append(f"- {column}: final log-likelihood {diff:+.2e} from the compiled harness's "
                     f"({abs(diff / base['final_loglik']):.1e} relative)")
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=None, help="Adam steps (default: the preset's, 1000)")
    parser.add_argument("--torch-steps", type=int, default=None,
                        help="steps for torchdiffeq, whose time is then scaled to --steps (default: --steps)")
    parser.add_argument("--repeats", type=int, default=None,
                        help="runs of each column (torchdiffeq: one) and of reproduce, the median shown "
                             "(default 3; --quick 1)")
    parser.add_argument("--quick", action="store_true", help="10 steps and one run, for the tests")
    parser.add_argument("--frameworks", nargs="+", choices=list(COLUMNS), metavar="COLUMN",
                        help=f"only these columns (default all of {list(COLUMNS)})")
    parser.add_argument("--no-reproduce", action="store_true", help="leave out the `harness reproduce` run")
    parser.add_argument("--out", default="reports/training")
    parser.add_argument("--worker", nargs=3, metavar=("FRAMEWORK", "METHOD", "PROBLEM"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    default_steps = _settings().steps
    steps = args.steps if args.steps is not None else (10 if args.quick else default_steps)
    if steps < 1:
        parser.error(f"--steps {steps}: expected an integer >= 1")
    repeats = args.repeats if args.repeats is not None else (1 if args.quick else 3)
    if repeats < 1:
        parser.error(f"--repeats {repeats}: expected an integer >= 1")
    if args.torch_steps is not None and args.torch_steps < 1:
        parser.error(f"--torch-steps {args.torch_steps}: expected an integer >= 1")
    if args.worker:
        framework, method, path = args.worker
        print(json.dumps(WORKERS[framework](method, path, steps)))
        return 0

    from harness._io import ensure_writable_dir, write_json, write_text
    from harness._forward import SolveOptions
    from harness.problems import save_problem, seed_problem

    preset = _settings()
    out = ensure_writable_dir(args.out)
    command = "python benchmarks/bench_training.py " + " ".join(argv if argv is not None else sys.argv[1:])
    load = os.getloadavg()
    header = [
        f"CPU: {cpu_model()} ({os.cpu_count()} logical cores); python {platform.python_version()}; "
        f"load average at the start {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}",
        f"The tutorial's problem as `harness reproduce` trains it: {steps} Adam steps (lr {preset.lr:g}), "
        f"BacksolveAdjoint (diffrax also RecursiveCheckpointAdjoint), {preset.solver} / Dopri5, "
        f"rtol {preset.rtol:g}, atol {preset.atol:g}, float64; each framework in its own process",
    ]
    print("\n".join(header), flush=True)
    columns = args.frameworks or list(COLUMNS)
    runs: dict = {column: [] for column in columns}
    reproduce_runs: list = []
    with tempfile.TemporaryDirectory(prefix="bench-training-") as folder:
        # reproduce's own problem: the seed problem, its data drawn at the preset's tolerances
        problem = seed_problem(seed=0, data_options=SolveOptions(preset.solver, preset.rtol, preset.atol))
        path = save_problem(problem, Path(folder) / "tutorial.npz")
        # rounds over the columns rather than each column's repeats in a row: a spell of load from
        # other processes then falls on every column alike, and each column's median skips it
        for round_ in range(repeats):
            for column in columns:
                framework, method = COLUMNS[column]
                if not _available(framework):
                    if round_ == 0:
                        print(f"  {column:30s} not installed: skipped", flush=True)
                    continue
                if framework == "torchdiffeq" and round_ > 0:
                    continue  # minutes a run: once, its ratio to the others is far beyond the noise
                n = args.torch_steps if framework == "torchdiffeq" and args.torch_steps else steps
                result = _run_worker(framework, method, path, n)
                if result is not None:
                    runs[column].append({**result, "round": round_})
                    print(f"  {column:30s} training {_seconds(result['training'])} ({n} steps), "
                          f"compilation {_seconds(result['compile'])}, final {result['final_loglik']:.6f}",
                          flush=True)
            if not args.no_reproduce:
                reproduce = _reproduce(steps, default_steps)
                if reproduce is not None:
                    reproduce_runs.append(reproduce)
                    print(f"  {'harness reproduce':30s} wall {_seconds(reproduce['wall'])}, "
                          f"training inside {_seconds(reproduce['training'])}", flush=True)
    results = {column: _median_run(runs[column], "training") for column in columns}
    reproduce = _median_run(reproduce_runs, "wall")

    counts = ", ".join(f"{c} {r['runs']}" for c, r in results.items() if r is not None)
    text = [*header, "", f"Command: `{command.strip()}`", "",
            f"Training: each column's median run, every run a fresh process (runs: {counts}); compilation "
            "apart. Ratios (÷): time per training step over diffrax's, the median of each round's ratio "
            "(runs of a round share the machine's load of the moment).", "", *_table(results, steps), ""]
    agreement = _agreement(results, steps)
    if agreement:
        text += ["Final log-likelihoods against the compiled harness's (the same problem, θ0, optimiser and "
                 "tolerances; the peers' step-size controllers take other steps, so they agree to the "
                 "tolerance, not to rounding):", *agreement, ""]
    if reproduce is not None:
        text.append(f"`{reproduce['command']}` (default preset, fresh process, compiled path): "
                    f"{_seconds(reproduce['wall'])} wall, of which {_seconds(reproduce['training'])} training; "
                    f"final log-likelihood {reproduce['final_loglik']:.6f} (median of {reproduce['runs']} runs)")
        phases = reproduce["phases"].items()
        text.append("Its phases: " + "; ".join(f"{phase} {_seconds(sec)}" for phase, sec in phases))
        text.append("")
    notes = {c: r["note"] for c, r in results.items() if r is not None}
    text += [f"- {c}: {note}" for c, note in notes.items()]
    print("\n" + "\n".join(text), flush=True)
    write_text(out / "table.md", "\n".join(text) + "\n")
    write_json(out / "results.json", {
        "cpu": cpu_model(), "logical_cores": os.cpu_count(), "load_average_at_start": list(load),
        "load_average_at_end": list(os.getloadavg()), "command": command.strip(),
        "settings": {"steps": steps, "lr": preset.lr, "solver": preset.solver, "rtol": preset.rtol,
                     "atol": preset.atol, "method": "BacksolveAdjoint", "log_every": LOG_EVERY,
                     "problem": problem.describe()},
        "results": results, "reproduce": reproduce,
    })
    return 0


if __name__ == "__main__":
    sys.exit(main())
