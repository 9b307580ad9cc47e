"""The comparison's figures, drawn from the analysis dict (`metrics.analyse`), matplotlib Agg.

Each function returns a Figure (or None when there is nothing to draw); `report.py` saves them.
Errors and costs span orders of magnitude, so their axes are logarithmic.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # files only: never open a window, never need a display

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.colors import LogNorm  # noqa: E402

_MARKERS = "osD^v<>pXh*"
_WRT_TITLES = {"dtheta": "dL/dθ", "dz0": "dL/dz0"}


def _style(i: int) -> dict:
    return {"marker": _MARKERS[i % len(_MARKERS)], "color": plt.get_cmap("tab10")(i % 10)}


def heatmap(matrix: dict, solver: str) -> plt.Figure:
    """Engine x engine relative error for dL/dθ and dL/dz0 at one solver and tolerance."""
    labels = matrix["labels"]
    n = len(labels)
    fig, axes = plt.subplots(1, 2, figsize=(4.2 + 1.35 * n * 2, 1.6 + 0.75 * n), squeeze=False)
    values = [v for w in ("dtheta", "dz0") for row in matrix[w]["relative_error"] for v in row
              if v is not None and v > 0]
    low = max(min(values, default=1e-16), 1e-16)
    high = max(max(values, default=1.0), low * 10)
    norm = LogNorm(vmin=low, vmax=high)
    for ax, w in zip(axes[0], ("dtheta", "dz0")):
        data = np.array([[np.nan if v is None else max(v, low) for v in row]
                         for row in matrix[w]["relative_error"]], dtype=float)
        np.fill_diagonal(data, np.nan)
        cmap = plt.get_cmap("viridis").with_extremes(bad="0.9")
        image = ax.imshow(np.ma.masked_invalid(data), cmap=cmap, norm=norm)
        for i in range(n):
            for j in range(n):
                raw = matrix[w]["relative_error"][i][j]
                text = "—" if i == j else ("n/a" if raw is None else f"{raw:.1e}")
                shade = "white" if (raw is not None and i != j and norm(max(raw, low)) < 0.6) else "black"
                ax.text(j, i, text, ha="center", va="center", fontsize=7, color=shade)
        ax.set_xticks(range(n), labels, rotation=35, ha="right", fontsize=8)
        ax.set_yticks(range(n), labels, fontsize=8)
        ax.set_xlabel("measured against (column)")
        ax.set_ylabel("engine (row)")
        ax.set_title(f"{_WRT_TITLES[w]}: relative error ‖row − col‖ / ‖col‖", fontsize=9)
    fig.colorbar(image, ax=axes[0].tolist(), label="relative error (log scale)", shrink=0.85)
    fig.suptitle(f"Cross-validation, {solver} at rtol = {matrix['rtol']:g}, atol = {matrix['atol']:g}",
                 fontsize=10)
    return fig


def work_precision(analysis: dict, solvers, floors: dict) -> plt.Figure | None:
    """Error of dL/dθ against wall time and against f evaluations, one curve per engine, log-log.

    `floors` maps a label to the reference's estimated error (a horizontal line): no engine's
    measured error can meaningfully fall below it.
    """
    curves = [c for c in analysis["curves"] if c["points"]]
    if not curves:
        return None
    engines = sorted({c["engine"] for c in curves}, key=lambda e: [c["engine"] for c in curves].index(e))
    fig, axes = plt.subplots(len(solvers), 2, figsize=(11, 4.2 * len(solvers)), squeeze=False)
    for row, solver in enumerate(solvers):
        for col, (x_key, x_label) in enumerate((
            ("seconds", "wall time of one gradient (s)"),
            ("n_rhs", "right-hand-side evaluations, forward + backward"),
        )):
            ax = axes[row][col]
            for curve in curves:
                if curve["solver"] != solver:
                    continue
                points = [p for p in curve["points"] if p[x_key] is not None and p["error"] > 0]
                if not points:
                    continue
                style = _style(engines.index(curve["engine"]))
                x = [p[x_key] for p in points]
                y = [p["error"] for p in points]
                ax.plot(x, y, label=curve["engine"], linewidth=1.4, markersize=5, **style)
                flagged = [(a, b) for a, b, p in zip(x, y, points) if p["flagged"]]
                if flagged:
                    ax.scatter(*zip(*flagged), s=140, facecolors="none", edgecolors="red",
                               linewidths=1.5, zorder=5)
            for k, (label, floor) in enumerate(floors.items()):
                if floor is not None and floor > 0:
                    ax.axhline(floor, color="0.4", linestyle="--", linewidth=1,
                               label=f"reference accuracy ({label})" if k == 0 else None)
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel(x_label)
            ax.set_ylabel("relative error of dL/dθ vs reference")
            ax.set_title(f"Work-precision, {solver}", fontsize=10)
            ax.grid(True, which="major", alpha=0.3)
    handles, labels = [], []
    for ax in axes.ravel():
        for h, l in zip(*ax.get_legend_handles_labels()):
            if l not in labels:
                handles.append(h)
                labels.append(l)
    if any(p["flagged"] for c in curves for p in c["points"]):
        handles.append(plt.Line2D([], [], marker="o", linestyle="", markerfacecolor="none",
                                  markeredgecolor="red", markersize=10))
        labels.append("flagged by the engine (e.g. reconstruction check)")
    fig.suptitle("Gradient error against cost, over the tolerance sweep (tighter tolerance → lower right)",
                 fontsize=10)
    fig.tight_layout()
    # Below the axes (the saved figure's tight bounding box takes it in), never over the x labels.
    fig.legend(handles, labels, loc="upper center", ncol=min(3, len(labels)), fontsize=8,
               bbox_to_anchor=(0.5, 0.0))
    return fig


def memory(analysis: dict, solvers, tolerance) -> plt.Figure | None:
    """Peak traced memory of one gradient per engine, at the tightest tolerance, per solver."""
    rows = [r for r in analysis["rows"] if r.get("peak_memory_bytes") is not None
            and (r["rtol"], r["atol"]) == tuple(tolerance)]
    if not rows:
        return None
    engines = list(dict.fromkeys(r["engine"] for r in rows))
    width = 0.8 / len(solvers)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.2 * len(engines) + 2), 4.2))
    for k, solver in enumerate(solvers):
        values = []
        for engine in engines:
            mine = [r["peak_memory_bytes"] for r in rows if r["engine"] == engine and r["solver"] == solver]
            values.append(max(mine) / 2**20 if mine else np.nan)
        ax.bar(np.arange(len(engines)) + (k - (len(solvers) - 1) / 2) * width, values, width,
               label=solver, color=plt.get_cmap("tab10")(k))
    ax.set_xticks(range(len(engines)), engines, rotation=25, ha="right", fontsize=8)
    ax.set_yscale("log")
    ax.set_ylabel("peak traced memory of one gradient (MiB)")
    ax.set_title(f"Peak memory (tracemalloc), rtol = {tolerance[0]:g}, atol = {tolerance[1]:g}",
                 fontsize=10)
    ax.legend(title="solver", fontsize=8)
    ax.grid(True, axis="y", which="major", alpha=0.3)
    fig.tight_layout()
    return fig


def training(analysis: dict) -> plt.Figure | None:
    """Log-likelihood per datapoint against step and against wall time, one curve per engine."""
    runs = [t for t in analysis["training"] if "history" in t]
    if not runs:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for i, run in enumerate(runs):
        style = _style(i)
        steps = [h["step"] for h in run["history"]]
        loglik = [h["loglik_per_datapoint"] for h in run["history"]]
        seconds = [h["seconds"] for h in run["history"]]
        kwargs = dict(label=run["engine"], markersize=3, linewidth=1.3, **style)
        axes[0].plot(steps, loglik, **kwargs)
        axes[1].plot(seconds, loglik, **kwargs)
    perfect = runs[0]["perfect_loglik_per_datapoint"]
    for ax, x_label in zip(axes, ("training step", "wall time (s)")):
        ax.axhline(perfect, color="0.4", linestyle="--", linewidth=1, label="perfect fit")
        ax.set_xlabel(x_label)
        ax.set_ylabel("log-likelihood per datapoint")
        # Linear axes: the log-likelihood is negative and its approach to the perfect fit is
        # what matters; symlog would distort the comparison near the end.
        ax.grid(True, alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle("Training with each engine (same data, initial θ and Adam settings)", fontsize=10)
    fig.tight_layout()
    return fig


def trajectories(analysis: dict) -> plt.Figure | None:
    """Each trained model's paths: the first observed component against t, one panel per training
    run, coloured by the initial value; with augmentation, a second row shows the first augmented
    component against the observed one (where the paths go to pass each other)."""
    runs = [t for t in analysis["training"] if "trajectories" in t]
    if not runs:
        return None
    augmented = any(r["augment"] for r in runs)
    fig, axes = plt.subplots(1 + augmented, len(runs), figsize=(3.6 * len(runs), 3.2 * (1 + augmented)),
                             squeeze=False)
    cmap = plt.get_cmap("coolwarm")
    for column, run in enumerate(runs):
        t = np.asarray(run["trajectory_times"])
        paths = np.asarray(run["trajectories"])  # (times, states, N + A)
        start = paths[0, :, 0]
        span = max(np.max(np.abs(start)), 1e-12)
        ax = axes[0][column]
        for b in range(paths.shape[1]):
            ax.plot(t, paths[:, b, 0], color=cmap(0.5 + 0.5 * start[b] / span), linewidth=1)
        ax.set_title(run["engine"], fontsize=9)
        ax.set_xlabel("t")
        ax.set_ylabel("z₁(t) (observed)")
        ax.grid(True, alpha=0.3)
        if augmented:
            ax = axes[1][column]
            if paths.shape[2] > run["observed_dim"]:
                for b in range(paths.shape[1]):
                    ax.plot(paths[:, b, 0], paths[:, b, run["observed_dim"]],
                            color=cmap(0.5 + 0.5 * start[b] / span), linewidth=1)
                ax.set_xlabel("z₁ (observed)")
                ax.set_ylabel("first augmented component")
                ax.grid(True, alpha=0.3)
            else:
                ax.axis("off")
    fig.suptitle("Trained models' trajectories from the training states (colour: initial z₁)", fontsize=10)
    fig.tight_layout()
    return fig
