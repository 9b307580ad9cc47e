"""The fits kind: several models fitted to one real time series, and every adjoint on each model.

    [fits]
    series = "lynx_hare"        # a series of `harness.problems.SERIES`: years, values, units
    fit_until = 1915            # fit the years up to here; forecast the rest
    engines = ["BacksolveAdjoint", "InterpolatingAdjoint", ...]   # compared on every model
    gradient_tolerances = [1e-6, 1e-8]
    fit_engine = "GaussAdjoint" # the gradient the fits use (also solver, rtol, atol, max_iterations)
    baseline = "Lotka-Volterra" # the model the others are compared with (a label below)

    [[fits.models]]
    label = "Lotka-Volterra"
    model = "harness.models:LotkaVolterra"   # an importable 'module:callable' ...
    parameters = { init_theta = [0.5, 0.25, 0.8, 0.25] }   # ... and its plain parameters

Each model is fitted by L-BFGS-B (scipy) over θ and the first year's state z0 together, minimising
the sum of squared residuals in the series' model units over the fitted years (the first year's
residual z0 - y0 included; the harness's loss, a unit-variance Gaussian), with gradients from
`fit_engine`. The report gives the Gaussian log-likelihood over the fitted years with the noise σ at
its maximum-likelihood value, σ̂² = RSS / n (the fitted model's own; comparable across models and
independent of the units up to a shared constant), and the root-mean-square forecast error over the rest
(solved forward from the fitted z0), and draws data against every fit. Separately, every engine's
gradient of the same loss at each model's starting θ (z0 = the first year's data) is compared with
ForwardSensitivity at rtol = atol = 1e-10 (DP8): relative error, time, function evaluations, peak
memory.
"""

from __future__ import annotations

import functools
import json
import time
import warnings
from dataclasses import dataclass

import numpy as np

from .. import _memory as memory
from .._forward import SolveOptions, solve_forward
from .._interrupts import raise_if_interrupt
from ..errors import HarnessInputError, SolverError
from ..problems import Problem
from ._cells import base_record, one_line_error, plain
from ._kind import Cell, ExperimentKind, register_kind
from .engines import build_engine
from .spec import EngineSpec, _check_keys, _int, _nonempty_list, _positive, _solver, _string, parse_engine

REFERENCE_TOL = 1e-10
SECTION = "fits"


def _series():
    from ..problems import SERIES

    return SERIES


@dataclass(frozen=True)
class ModelEntry:
    """One model of the comparison: a label, an importable name and its parameters (JSON)."""

    label: str
    model: str
    parameters: str = "{}"

    def build(self):
        from ..models import build_model

        return build_model(self.model, json.loads(self.parameters))

    def as_dict(self) -> dict:
        return {"label": self.label, "model": self.model, "parameters": json.loads(self.parameters)}


@dataclass(frozen=True)
class FitsSettings:
    series: str
    fit_until: float
    models: tuple[ModelEntry, ...]
    engines: tuple[EngineSpec, ...]
    gradient_tolerances: tuple[float, ...] = (1e-6, 1e-8)
    fit_engine: EngineSpec = EngineSpec("harness", "GaussAdjoint")
    solver: str = "DP5"
    rtol: float = 1e-6
    atol: float = 1e-6
    max_iterations: int = 200
    seed: int = 0
    baseline: str | None = None


@dataclass(frozen=True)
class FitCell(Cell):
    """One model fitted to the series."""

    series: str
    fit_until: float
    model: ModelEntry
    engine: EngineSpec
    solver: str
    rtol: float
    atol: float
    max_iterations: int
    seed: int

    kind = SECTION
    role = "fit"


@dataclass(frozen=True)
class FitGradientCell(Cell):
    """One engine's gradient on one model at its starting θ, against ForwardSensitivity."""

    series: str
    fit_until: float
    model: ModelEntry
    engine: EngineSpec
    solver: str
    rtol: float
    seed: int
    repeats: int = 3

    kind = SECTION
    role = "gradient"


# --------------------------------------------------------------------------------------- the data
@functools.lru_cache(maxsize=8)
def _data(series: str, fit_until: float):
    """(years (K,), values in model units (K, N), units text, scale, the fit mask (K,))."""
    entry = _series()[series]
    years, values = entry["load"]()
    scale, units = entry["scale"], entry["units"]
    z = values * scale
    fit = years <= fit_until
    return years, z, units, scale, fit


def _problem(cell, model, theta, z0) -> Problem:
    years, z, _, _, fit = _data(cell.series, cell.fit_until)
    t = years[fit] - years[0]
    return Problem(model, theta, np.asarray(z0, dtype=np.float64)[None], 0.0, t[1:], z[fit][1:, None, :],
                   f"{cell.series}_{cell.model.label}")


def _start(cell, model):
    """The starting θ (the model's init at `seed`) and z0 (the first year's data)."""
    years, z, *_ = _data(cell.series, cell.fit_until)
    return model.init(np.random.default_rng(cell.seed)), z[0].copy()


def _gaussian_constant(n_values: int) -> float:
    return 0.5 * np.log(2 * np.pi) * n_values


# ----------------------------------------------------------------------------------------- the kind
class FitsKind(ExperimentKind):
    name = SECTION
    tables = (SECTION,)
    figures = ("fits",)

    def parse(self, tables, *, problem, base):
        table, where = tables[SECTION], f"[{SECTION}]"
        _check_keys(table, where, ("series", "fit_until", "models", "engines"),
                    ("gradient_tolerances", "fit_engine", "solver", "rtol", "atol", "max_iterations", "seed",
                     "baseline"))
        series = _string(table["series"], f"{where} series", _series())
        fit_until = float(_positive(table["fit_until"], f"{where} fit_until"))
        years = _data(series, fit_until)[0]
        if not years[1] <= fit_until < years[-1]:
            raise HarnessInputError(f"{where} fit_until = {fit_until:g}: expected a time from {years[1]:g} to "
                                    f"before {years[-1]:g} (something to fit and something to forecast)")
        models = []
        for i, entry in enumerate(_nonempty_list(table["models"], f"{where} models")):
            here = f"{where} models[{i}]"
            if not isinstance(entry, dict):
                raise HarnessInputError(f"{here}: expected a table with label, model and parameters")
            _check_keys(entry, here, ("label", "model"), ("parameters",))
            parameters = entry.get("parameters", {})
            model = ModelEntry(_string(entry["label"], f"{here} label"), _string(entry["model"], f"{here} model"),
                               json.dumps(parameters, sort_keys=True))
            try:
                model.build()  # an unknown name or bad parameter: one line now, before anything runs
            except HarnessInputError as err:
                raise HarnessInputError(f"{here}: {err}") from None
            models.append(model)
        labels = [m.label for m in models]
        if len(set(labels)) != len(labels):
            raise HarnessInputError(f"{where} models: labels {labels} repeat; expected distinct labels")
        baseline = table.get("baseline")
        if baseline is not None and baseline not in labels:
            raise HarnessInputError(f"{where} baseline = {baseline!r}: expected one of the labels {labels}")
        engines = tuple(parse_engine(e, f"{where} engines[{i}]")
                        for i, e in enumerate(_nonempty_list(table["engines"], f"{where} engines")))
        if any(e.backend != "harness" for e in engines):
            raise HarnessInputError(f"{where} engines: expected harness engines (other backends take the MLP only)")
        return FitsSettings(
            series=series, fit_until=fit_until, models=tuple(models), engines=engines,
            gradient_tolerances=tuple(_positive(t, f"{where} gradient_tolerances") for t in
                                      _nonempty_list(table.get("gradient_tolerances", [1e-6, 1e-8]),
                                                     f"{where} gradient_tolerances")),
            fit_engine=parse_engine(table.get("fit_engine", "GaussAdjoint"), f"{where} fit_engine"),
            solver=_solver(table.get("solver", "DP5"), f"{where} solver"),
            rtol=_positive(table.get("rtol", 1e-6), f"{where} rtol"),
            atol=_positive(table.get("atol", 1e-6), f"{where} atol"),
            max_iterations=_int(table.get("max_iterations", 200), f"{where} max_iterations", 1),
            seed=_int(table.get("seed", 0), f"{where} seed", 0),
            baseline=baseline,
        )

    def settings_as_dict(self, s) -> dict:
        return {SECTION: {
            "series": s.series, "fit_until": s.fit_until, "models": [m.as_dict() for m in s.models],
            "engines": [e.as_dict() for e in s.engines], "gradient_tolerances": list(s.gradient_tolerances),
            "fit_engine": s.fit_engine.as_dict(), "solver": s.solver, "rtol": s.rtol, "atol": s.atol,
            "max_iterations": s.max_iterations, "seed": s.seed, "baseline": s.baseline}}

    def backends(self, s) -> set[str]:
        return {"harness"}

    def cells(self, experiment, s) -> list:
        fits = [FitCell(s.series, s.fit_until, m, s.fit_engine, s.solver, s.rtol, s.atol, s.max_iterations, s.seed)
                for m in s.models]
        grads = [FitGradientCell(s.series, s.fit_until, m, e, s.solver, tol, s.seed)
                 for m in s.models for e in s.engines for tol in s.gradient_tolerances]
        return fits + grads

    # ---------------------------------------------------------------------------------- running
    def run(self, cell) -> dict:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # overflow while a trial θ blows up
                return _fit(cell) if cell.role == "fit" else _gradient(cell)
        except Exception as err:  # a failure is this cell's finding, not the end of the comparison
            raise_if_interrupt(err)
            return base_record(cell, "failed", one_line_error(err))

    # --------------------------------------------------------------------------------- analysis
    def analyse(self, experiment, s, records, problem) -> dict:
        years, z, units, scale, fit = _data(s.series, s.fit_until)
        fits, grads = [], []
        for record in records:
            spec = record["spec"]
            row = {"role": record["role"], "model": spec["model"]["label"], "status": record["status"],
                   "reason": record["reason"]}
            if record["role"] == "fit":
                if record["status"] == "ok":
                    row.update({k: record[k] for k in (
                        "n_params", "loglik", "loglik_per_datapoint", "fit_rmse", "forecast_rmse", "iterations",
                        "n_gradients", "seconds", "converged", "message", "trajectory", "theta_named")})
                fits.append(row)
            else:
                row.update(engine=spec["engine"]["label"], rtol=spec["rtol"])
                if record["status"] == "ok":
                    row.update({k: record[k] for k in (
                        "dtheta_relative_error", "dz0_relative_error", "seconds", "n_rhs", "peak_memory_bytes",
                        "path", "n_params")})
                grads.append(row)
        by_label = {r["model"]: r for r in fits if r["status"] == "ok"}
        base = by_label.get(s.baseline)
        for r in fits:
            if base is not None and r["status"] == "ok":
                r["loglik_gain"] = r["loglik"] - base["loglik"]
                r["forecast_ratio"] = r["forecast_rmse"] / base["forecast_rmse"]
        return {SECTION: {"fits": fits, "gradients": grads, "years": years.tolist(), "data": (z / scale).tolist(),
                          "units": units, "fit_until": s.fit_until, "baseline": s.baseline,
                          "species": list(_series()[s.series]["names"])}}

    def claim_rows(self, analysis):
        section = analysis.get(SECTION, {})
        fits = [{k: v for k, v in r.items() if k not in ("trajectory", "theta_named")} for r in section.get("fits", [])]
        return fits + list(section.get("gradients", []))

    def summary(self, experiment, s, analysis) -> list[str]:
        section = analysis[SECTION]
        lines = []
        for r in section["fits"]:
            if r["status"] == "ok":
                lines.append(f"{r['model']} (P = {r['n_params']}): log-likelihood {r['loglik']:.2f} over the fitted "
                             f"years, forecast RMSE {r['forecast_rmse']:.2f} {section['units']}.")
            else:
                lines.append(f"{r['model']}: fit {r['status']} ({r['reason']}).")
        ok = [g for g in section["gradients"] if g["status"] == "ok"]
        if ok:
            worst = max(ok, key=lambda g: g["dtheta_relative_error"] / g["rtol"])
            lines.append(f"Every adjoint on every model: worst dL/dθ error {worst['dtheta_relative_error']:.1e} "
                         f"({worst['engine']} on {worst['model']} at rtol {worst['rtol']:g}), i.e. "
                         f"{worst['dtheta_relative_error'] / worst['rtol']:.1f}x rtol.")
        return lines

    def draw(self, experiment, s, analysis, save) -> None:
        if "fits" in experiment.figures:
            save("fits", _figure(analysis[SECTION]), "fits.png")

    def report(self, experiment, s, analysis, written) -> list[str]:
        section = analysis[SECTION]
        years = section["years"]
        n_fit = sum(1 for y in years if y <= s.fit_until)
        md = [f"## Fits to the {s.series.replace('_', '-')} data", "",
              f"Each model fitted by L-BFGS-B (scipy, at most {s.max_iterations} iterations) over θ and the "
              f"initial state together, gradients by {s.fit_engine.label} with {s.solver} at rtol = {s.rtol:g}, "
              f"atol = {s.atol:g}, minimising the sum of squared residuals in model units "
              f"({_series()[s.series]['model_units']}) over the {n_fit} fitted years {years[0]:g}-{s.fit_until:g} "
              f"(both species, the first year's residual included). The log-likelihood is the Gaussian one "
              f"over those years with σ at its maximum-likelihood value σ̂ = fit RMSE (each model its own), in "
              f"model units. The forecast is the fitted model solved on to "
              f"{years[-1]:g}; its error is the root mean square over the {len(years) - n_fit} years after "
              f"{s.fit_until:g} and both species, in {section['units']}.", ""]
        units = section["units"]
        md += [f"| model | P | status | log-likelihood (fitted years) | fit RMSE ({units}) | forecast RMSE ({units}) | "
               "forecast / baseline | iterations | time (s) |", "|---|---|---|---|---|---|---|---|---|"]
        for r in section["fits"]:
            if r["status"] != "ok":
                md.append(f"| {r['model']} | — | {r['status']} | — | — | — | — | — | {(r['reason'] or '')[:100]} |")
                continue
            ratio = f"{r['forecast_ratio']:.2f}" if "forecast_ratio" in r else "—"
            md.append(f"| {r['model']} | {r['n_params']} | ok | {r['loglik']:.2f} | {r['fit_rmse']:.2f} | "
                      f"{r['forecast_rmse']:.2f} | {ratio} | {r['iterations']} | {r['seconds']:.1f} |")
        md.append("")
        for r in section["fits"]:
            if r["status"] == "ok" and r["n_params"] <= 8:
                named = ", ".join(f"{k} = {v:.4g}" for k, v in r["theta_named"].items())
                md.append(f"Fitted {r['model']}: {named} (per year, model units).")
        md.append("")
        if "fits" in written:
            md += ["![fits](fits.png)", "",
                   "Data (points) against each fitted model (lines); left of the dashed line the years fitted, "
                   "right of it the forecast.", ""]
        md += ["### Every adjoint on every model", "",
               f"The gradient of the same loss at each model's starting θ (z0 = the first year's data), "
               f"with {s.solver} at rtol = atol as listed, against ForwardSensitivity at rtol = atol = "
               f"{REFERENCE_TOL:g} (DP8). Relative error: ‖g - g_ref‖ / ‖g_ref‖. Time: the median of 3 runs; "
               "memory: peak bytes allocated during one traced run (tracemalloc); path: which implementation ran.",
               "", "| model | engine | rtol | dL/dθ rel. error | dL/dz0 rel. error | time (ms) | f evals | "
               "peak memory (KiB) | path |", "|---|---|---|---|---|---|---|---|---|"]
        for g in section["gradients"]:
            if g["status"] != "ok":
                md.append(f"| {g['model']} | {g['engine']} | {g['rtol']:g} | {g['status']} | — | — | — | — | "
                          f"{(g['reason'] or '')[:80]} |")
                continue
            memory_kib = "—" if g["peak_memory_bytes"] is None else f"{g['peak_memory_bytes'] / 1024:.0f}"
            md.append(f"| {g['model']} | {g['engine']} | {g['rtol']:g} | {g['dtheta_relative_error']:.2e} | "
                      f"{g['dz0_relative_error']:.2e} | {g['seconds'] * 1e3:.1f} | {g['n_rhs']} | {memory_kib} | "
                      f"{g['path']} |")
        md.append("")
        return md


# --------------------------------------------------------------------------------------- the cells
def _fit(cell: FitCell) -> dict:
    from scipy.optimize import minimize

    from ..sensitivity import gradient

    with memory.allocating():
        model = cell.model.build()
        engine = build_engine(cell.engine, cell.solver, cell.rtol, cell.atol)
        theta0, z0 = _start(cell, model)
    years, z, units, scale, fit = _data(cell.series, cell.fit_until)
    n_params = model.n_params
    counter = {"gradients": 0}

    def objective(x):
        problem = _problem(cell, model, x[:n_params], x[n_params:])
        counter["gradients"] += 1
        try:
            result = gradient(problem, engine=engine, solver=cell.solver, rtol=cell.rtol, atol=cell.atol)
        except SolverError:
            # a trial step into a θ whose solution blows up: a large finite value sends the line search back
            return 1e12, np.zeros_like(x)
        r0 = x[n_params:] - z[0]  # the first year's residual: z0 is fitted too
        return (result.loss + 0.5 * float(r0 @ r0) + _gaussian_constant(r0.size),
                np.concatenate((result.dtheta, result.dz0[0] + r0)))

    start = time.perf_counter()
    with memory.allocating():
        solution = minimize(objective, np.concatenate((theta0, z0)), jac=True, method="L-BFGS-B",
                            options={"maxiter": cell.max_iterations})
    seconds = time.perf_counter() - start
    theta, z0_fit = solution.x[:n_params], solution.x[n_params:]
    options = SolveOptions(cell.solver, min(cell.rtol, 1e-8), min(cell.atol, 1e-8))
    with memory.allocating():
        at_years = solve_forward(model, theta, z0_fit[None], 0.0, years[1:] - years[0], options).z_at_times[:, 0]
        fine = np.linspace(0.0, years[-1] - years[0], 201)[1:]
        curve = solve_forward(model, theta, z0_fit[None], 0.0, fine, options).z_at_times[:, 0]
    predicted = np.concatenate((z0_fit[None], at_years))
    residual = predicted - z
    n_fit, rss = residual[fit].size, float(np.sum(residual[fit] ** 2))
    loglik = -0.5 * n_fit * (np.log(2 * np.pi * rss / n_fit) + 1.0)  # σ² at its maximum, RSS / n
    from ..models import entry_names

    names = entry_names(model)
    record = base_record(cell, "ok", None if solution.success else str(solution.message))
    record.update(
        n_params=n_params, theta=theta.tolist(), z0=z0_fit.tolist(),
        theta_named={names[i]: float(theta[i]) for i in range(min(n_params, 8))},
        loglik=loglik, loglik_per_datapoint=loglik / n_fit, sigma=float(np.sqrt(rss / n_fit) / scale),
        fit_rmse=float(np.sqrt(np.mean(residual[fit] ** 2)) / scale),
        forecast_rmse=float(np.sqrt(np.mean(residual[~fit] ** 2)) / scale),
        iterations=int(solution.nit), n_gradients=counter["gradients"], seconds=seconds,
        converged=bool(solution.success), message=str(solution.message),
        trajectory={"t": (years[0] + np.concatenate(([0.0], fine))).tolist(),
                    "z": (np.concatenate((z0_fit[None], curve)) / scale).tolist()},
    )
    return record


@functools.lru_cache(maxsize=16)
def _reference(series: str, fit_until: float, model: ModelEntry, seed: int):
    """ForwardSensitivity at the starting point, at REFERENCE_TOL with DP8 (per process)."""
    from ..sensitivity import ForwardSensitivity, gradient

    cell = FitGradientCell(series, fit_until, model, EngineSpec("harness", "ForwardSensitivity"), "DP8", 0.0, seed)
    built = model.build()
    theta, z0 = _start(cell, built)
    problem = _problem(cell, built, theta, z0)
    return problem, gradient(problem, engine=ForwardSensitivity(), solver="DP8", rtol=REFERENCE_TOL,
                             atol=REFERENCE_TOL)


def _gradient(cell: FitGradientCell) -> dict:
    from ..sensitivity import gradient

    with memory.allocating():
        problem, reference = _reference(cell.series, cell.fit_until, cell.model, cell.seed)
        engine = build_engine(cell.engine, cell.solver, cell.rtol, cell.rtol)

    def call():
        return gradient(problem, engine=engine, solver=cell.solver, rtol=cell.rtol, atol=cell.rtol)

    with memory.allocating():
        results = [call() for _ in range(cell.repeats)]
    peak = memory.peak_memory(call)
    result = results[0]
    record = base_record(cell, "ok")
    record.update(
        n_params=problem.model.n_params,
        dtheta_relative_error=float(
            np.linalg.norm(result.dtheta - reference.dtheta) / np.linalg.norm(reference.dtheta)),
        dz0_relative_error=float(np.linalg.norm(result.dz0 - reference.dz0) / np.linalg.norm(reference.dz0)),
        seconds=float(np.median([r.seconds for r in results])), n_rhs=int(result.n_rhs),
        peak_memory_bytes=int(peak), path=result.path, diagnostics=plain(result.diagnostics),
    )
    return record


# ------------------------------------------------------------------------------------------ figure
def _figure(section: dict):
    import matplotlib.pyplot as plt

    years = np.asarray(section["years"])
    data = np.asarray(section["data"])
    species = section.get("species") or [f"z{i}" for i in range(data.shape[1])]
    fig, axes = plt.subplots(1, data.shape[1], figsize=(6 * data.shape[1], 4.2), sharex=True)
    axes = np.atleast_1d(axes)
    for i, ax in enumerate(axes):
        ax.plot(years, data[:, i], "ko", ms=4, label="data", zorder=3)
        for r in section["fits"]:
            if r["status"] == "ok":
                ax.plot(r["trajectory"]["t"], np.asarray(r["trajectory"]["z"])[:, i], lw=1.6, label=r["model"])
        ax.axvline(section["fit_until"] + 0.5, color="grey", ls="--", lw=1)
        ax.set_title(species[i])
        ax.set_xlabel("year")
        ax.set_ylabel(section["units"])
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    return fig


register_kind(FitsKind())
