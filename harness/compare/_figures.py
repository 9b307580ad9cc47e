"""The comparison's figures, matplotlib Agg: heatmaps, work-precision, memory and training plots.

Each function returns a Figure (or None when there is nothing to draw); the kinds save them.
Errors and costs span orders of magnitude, so their axes are logarithmic; an engine has the same
colour in every figure of every report (`engine_colour`), so reports can be read side by side.
"""

from __future__ import annotations

import math
import zlib

import matplotlib

matplotlib.use("Agg")  # files only: never open a window, never need a display

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.colors import LogNorm  # noqa: E402
from matplotlib.ticker import Formatter, LogLocator, MaxNLocator, NullFormatter  # noqa: E402

_WRT_TITLES = {"dtheta": "dL/dθ", "dz0": "dL/dz0"}
FLAGGED_COLOUR = "#d62728"  # the ring around a flagged number: red is kept out of engine colours

# A fixed colour per engine label (Tableau and Paul Tol hues, red left out for the flags); engines
# of one family (ours, diffrax's, Julia's) are told apart by hue, not by shade.
ENGINE_COLOURS = {
    "ForwardSensitivity": "#333333",
    "BacksolveAdjoint": "#1f77b4",
    "InterpolatingAdjoint": "#ff7f0e",
    "InterpolatingAdjoint(checkpointing)": "#2ca02c",
    "QuadratureAdjoint": "#9467bd",
    "GaussAdjoint": "#8c564b",
    "FiniteDifferences": "#7f7f7f",
    "torchdiffeq:odeint_adjoint": "#e377c2",
    "torchdiffeq:odeint": "#f7b6d2",
    "diffrax:BacksolveAdjoint": "#bcbd22",
    "diffrax:RecursiveCheckpointAdjoint": "#17becf",
    "julia:BacksolveAdjoint": "#004488",
    "julia:InterpolatingAdjoint": "#994f00",
    "julia:QuadratureAdjoint": "#5d3a9b",
    "julia:GaussAdjoint": "#117733",
}
_SPARE = ["#aec7e8", "#ffbb78", "#98df8a", "#c5b0d5", "#c49c94", "#dbdb8d", "#9edae5", "#882255",
          "#44aa99", "#999933", "#aa4499", "#332288"]
_MARKERS = "osD^v<>pXh*"


def engine_colour(label: str) -> str:
    """The colour of an engine in every figure: fixed for known labels, else from its name's hash.

    The hash (CRC-32, not Python's salted `hash`) makes an unknown label's colour the same in every
    run and every report.
    """
    if label in ENGINE_COLOURS:
        return ENGINE_COLOURS[label]
    return _SPARE[zlib.crc32(label.encode()) % len(_SPARE)]


def _marker(label: str) -> str:
    names = list(ENGINE_COLOURS)
    i = names.index(label) if label in names else zlib.crc32(label.encode())
    return _MARKERS[i % len(_MARKERS)]


def _short(x: float, digits: int = 3) -> str:
    """A short tick label: 0.02, 500, 2000, 2e4, 4.245e4, 3e-5 (at most `digits` significant)."""
    if x <= 0:
        return ""
    if 1e-3 <= x < 1e4:
        return np.format_float_positional(x, precision=digits, unique=True, fractional=False, trim="-")
    mantissa, exponent = f"{x:.{digits - 1}e}".split("e")
    return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"


class _ShortFormatter(Formatter):
    """`_short` labels with as many digits as it takes for neighbouring ticks to read differently."""

    def __call__(self, x, pos=None):
        return _short(x)

    def format_ticks(self, values):
        for digits in range(3, 8):
            labels = [_short(v, digits) for v in values]
            if len(set(labels)) == len(labels):
                return labels
        return labels


def _readable_log_axis(axis, values) -> None:
    """Log ticks that do not overlap and say different things.

    Within a fraction of a decade (the f-evaluation counts of one solver), a few evenly spaced
    ticks; within a decade or so, 1-2-5; across many, decades (at most seven labelled).
    """
    values = [v for v in values if v is not None and v > 0]
    span = math.log10(max(values) / min(values)) if values else 0.0
    if span < 0.5:
        axis.set_major_locator(MaxNLocator(nbins=4))
    elif span <= 1.5:
        axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    else:
        axis.set_major_locator(LogLocator(base=10, subs=(1.0,), numticks=7))
    axis.set_major_formatter(_ShortFormatter())
    axis.set_minor_formatter(NullFormatter())


def heatmap(matrix: dict, solver: str) -> plt.Figure:
    """Engine x engine relative error for dL/dθ and dL/dz0 at one solver and tolerance."""
    labels = matrix["labels"]
    n = len(labels)
    status = matrix.get("status", ["ok"] * n)
    fig, axes = plt.subplots(1, 2, figsize=(3.4 + 1.3 * n * 2, 1.6 + 0.75 * n), squeeze=False)
    values = [v for w in ("dtheta", "dz0") for row in matrix[w]["relative_error"] for v in row
              if v is not None and v > 0]
    low = max(min(values, default=1e-16), 1e-16)
    high = max(max(values, default=1.0), low * 10)
    norm = LogNorm(vmin=low, vmax=high)
    for k, (ax, w) in enumerate(zip(axes[0], ("dtheta", "dz0"), strict=True)):
        data = np.array([[np.nan if v is None else max(v, low) for v in row]
                         for row in matrix[w]["relative_error"]], dtype=float)
        np.fill_diagonal(data, np.nan)
        cmap = plt.get_cmap("viridis").with_extremes(bad="0.9")
        image = ax.imshow(np.ma.masked_invalid(data), cmap=cmap, norm=norm)
        for i in range(n):
            for j in range(n):
                raw = matrix[w]["relative_error"][i][j]
                text = "—" if i == j else ("n/a" if raw is None else f"{raw:.1e}")
                if raw is None and "failed" in (status[i], status[j]):
                    text = "failed"  # marked, not left blank: the engine ran and raised
                shade = "white" if (raw is not None and i != j and norm(max(raw, low)) < 0.6) else "black"
                ax.text(j, i, text, ha="center", va="center", fontsize=7, color=shade)
        ax.set_xticks(range(n), labels, rotation=35, ha="right", fontsize=8)
        # The two panels share their rows: name them once, on the left, so nothing overlaps.
        ax.set_yticks(range(n), labels if k == 0 else [""] * n, fontsize=8)
        for tick in (*ax.get_xticklabels(), *ax.get_yticklabels()):
            tick.set_color(engine_colour(tick.get_text().removesuffix(" (reference)")))
        ax.set_xlabel("measured against (column)")
        if k == 0:
            ax.set_ylabel("engine (row)")
        ax.set_title(f"{_WRT_TITLES[w]}: relative error ‖row − col‖ / ‖col‖", fontsize=9)
    fig.colorbar(image, ax=axes[0].tolist(), label="relative error (log scale)", shrink=0.85)
    fig.suptitle(f"Cross-validation, {solver} at rtol = {matrix['rtol']:g}, atol = {matrix['atol']:g} "
                 "(each cell: the worst over seeds)", fontsize=10)
    return fig


def work_precision(curves: list[dict], solvers, floor_label: str, floor: float | None):
    """Error of dL/dθ against wall time and against f evaluations, one curve per engine, log-log.

    `curves` are the gradient kind's (per solver and engine: points, and the tolerances at which a
    cell failed). `floor` is the reference's estimated error (a dashed line): no engine's measured
    error can meaningfully fall below it. Failed cells are listed in their panel, flagged points
    ringed, so that no cell vanishes from the figure.
    """
    curves = [c for c in curves if c["points"] or c.get("failed")]
    if not curves:
        return None
    seeds = max((p.get("seeds", 1) for c in curves for p in c["points"]), default=1)
    fig, axes = plt.subplots(len(solvers), 2, figsize=(11, 4.4 * len(solvers)), squeeze=False)
    for row, solver in enumerate(solvers):
        mine = [c for c in curves if c["solver"] == solver]
        for col, (x_key, x_label) in enumerate((
            ("seconds", "wall time of one gradient (s, median of repeated calls)"),
            ("n_rhs", "right-hand-side evaluations, forward + backward"),
        )):
            ax = axes[row][col]
            xs, ys = [], []
            for curve in mine:
                points = [p for p in curve["points"] if p[x_key] is not None and p["error"] > 0]
                if not points:
                    continue
                x = [p[x_key] for p in points]
                y = [p["error"] for p in points]
                xs += x
                ys += y
                ax.plot(x, y, label=curve["engine"], linewidth=1.4, markersize=5,
                        marker=_marker(curve["engine"]), color=engine_colour(curve["engine"]))
                flagged = [(a, b) for a, b, p in zip(x, y, points, strict=True) if p["flagged"]]
                if flagged:
                    ax.scatter(*zip(*flagged, strict=True), s=140, facecolors="none",
                               edgecolors=FLAGGED_COLOUR, linewidths=1.5, zorder=5)
            failed = [c for c in mine if c.get("failed")]
            if failed:
                # A panel legend placed where it covers the fewest curves and lines (the reference
                # line included), not text at a fixed corner that the reference line can run through.
                ax.legend([plt.Line2D([], [], marker="x", linestyle="", color=engine_colour(c["engine"]))
                           for c in failed],
                          [f"{c['engine']} failed at rtol {', '.join(f'{rtol:g}' for rtol, _ in c['failed'])}"
                           for c in failed],
                          loc="best", fontsize=7.5, framealpha=0.9, handlelength=1.0, borderpad=0.4)
            if floor is not None and floor > 0:
                ax.axhline(floor, color="0.4", linestyle="--", linewidth=1,
                           label=f"reference accuracy ({floor_label})")
                ys.append(floor)
            ax.set_xscale("log")
            ax.set_yscale("log")
            _readable_log_axis(ax.xaxis, xs)
            _readable_log_axis(ax.yaxis, ys)
            ax.set_xlabel(x_label)
            ax.set_ylabel("relative error of dL/dθ vs reference")
            ax.set_title(f"Work-precision, {solver}", fontsize=10)
            ax.grid(True, which="major", alpha=0.3)
    handles, labels = [], []
    for ax in axes.ravel():
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            if label not in labels:
                handles.append(handle)
                labels.append(label)
    for curve in curves:  # an engine whose every cell failed still gets its colour in the legend
        if curve["engine"] not in labels and not curve["points"]:
            handles.append(plt.Line2D([], [], marker="X", linestyle="",
                                      color=engine_colour(curve["engine"])))
            labels.append(f"{curve['engine']} (every cell failed)")
    if any(p["flagged"] for c in curves for p in c["points"]):
        handles.append(plt.Line2D([], [], marker="o", linestyle="", markerfacecolor="none",
                                  markeredgecolor=FLAGGED_COLOUR, markersize=10))
        labels.append("flagged by the engine (e.g. reconstruction check)")
    point = ("one cell per point" if seeds == 1 else
             f"each point: geometric mean of the error, median of the cost over {seeds} seeds")
    fig.suptitle(f"Gradient error against cost over the tolerance sweep ({point}; tighter tolerance "
                 "→ lower right)", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.985))  # leave the suptitle its own line
    # Below the axes (the saved figure's tight bounding box takes it in), never over the x labels.
    fig.legend(handles, labels, loc="upper center", ncol=min(3, len(labels)), fontsize=8,
               bbox_to_anchor=(0.5, 0.0))
    return fig


def memory(rows: list[dict], solvers, tolerance):
    """Peak traced memory of one gradient per engine and solver, at one tolerance, as a dot plot.

    Dots on a log axis, not bars: a bar's length means nothing on a log scale. One row per engine
    in its colour, one marker per solver (a legend only when there are several solvers).
    """
    rows = [r for r in rows if r.get("peak_memory_bytes") is not None
            and (r["rtol"], r["atol"]) == tuple(tolerance)]
    if not rows:
        return None
    engines = list(dict.fromkeys(r["engine"] for r in rows))
    solvers = [s for s in solvers if any(r["solver"] == s for r in rows)]
    fig, ax = plt.subplots(figsize=(7.5, 1.2 + 0.45 * len(engines)))
    values = []
    for k, solver in enumerate(solvers):
        for i, engine in enumerate(engines):
            mine = [r["peak_memory_bytes"] for r in rows if r["engine"] == engine and r["solver"] == solver]
            if not mine:
                continue
            mib = max(mine) / 2**20
            values.append(mib)
            offset = (k - (len(solvers) - 1) / 2) * 0.18
            ax.plot([mib], [i + offset], marker=_MARKERS[k % len(_MARKERS)], markersize=8,
                    linestyle="", color=engine_colour(engine), markeredgecolor="black",
                    markeredgewidth=0.5)
    ax.set_yticks(range(len(engines)), engines, fontsize=8)
    for tick, engine in zip(ax.get_yticklabels(), engines, strict=True):
        tick.set_color(engine_colour(engine))
    ax.invert_yaxis()
    ax.set_xscale("log")
    _readable_log_axis(ax.xaxis, values)
    ax.set_xlabel("peak traced memory of one gradient (MiB, log scale; largest over seeds)")
    title = f"Peak memory (tracemalloc), rtol = {tolerance[0]:g}, atol = {tolerance[1]:g}"
    if len(solvers) == 1:
        title += f", {solvers[0]}"
    else:
        ax.legend([plt.Line2D([], [], marker=_MARKERS[k % len(_MARKERS)], linestyle="", color="0.5",
                              markeredgecolor="black") for k in range(len(solvers))],
                  solvers, title="solver", fontsize=8, loc="best")
    ax.set_title(title, fontsize=10)
    ax.grid(True, axis="x", which="major", alpha=0.3)
    fig.tight_layout()
    return fig


def training(runs: list[dict]):
    """The gap to the perfect fit against step and against wall time, one curve per engine.

    The gap (perfect-fit log-likelihood per datapoint minus the model's) is drawn on a log axis:
    on a linear axis the first steps' large values flatten the end, where the engines' curves
    overlap and the final gap is what matters. If the model fits better than the truth (possible
    on finite data) the axis is symmetric-log, linear near zero.
    """
    runs = [r for r in runs if "history" in r]
    if not runs:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    perfect = runs[0]["perfect_loglik_per_datapoint"]
    gaps = []
    for run in runs:
        steps = [h["step"] for h in run["history"]]
        gap = [perfect - h["loglik_per_datapoint"] for h in run["history"]]
        seconds = [h["seconds"] for h in run["history"]]
        gaps += gap
        kwargs = dict(label=run["engine"], markersize=3, linewidth=1.3, marker=_marker(run["engine"]),
                      color=engine_colour(run["engine"]))
        axes[0].plot(steps, gap, **kwargs)
        axes[1].plot(seconds, gap, **kwargs)
    positive = [g for g in gaps if g > 0]
    for ax, x_label in zip(axes, ("training step", "wall time (s, one run)"), strict=True):
        if positive and len(positive) == len(gaps):
            ax.set_yscale("log")
            _readable_log_axis(ax.yaxis, gaps)
        else:
            ax.set_yscale("symlog", linthresh=min(positive, default=1e-3))
            ax.axhline(0.0, color="0.4", linestyle="--", linewidth=1, label="perfect fit")
        ax.set_xlabel(x_label)
        ax.set_ylabel("perfect fit − log-likelihood per datapoint")
        ax.grid(True, alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"Training with each engine: gap to the perfect fit ({perfect:.4f} per datapoint); "
                 "same data, initial θ and Adam settings", fontsize=10)
    fig.tight_layout()
    return fig


def trajectories(runs: list[dict]):
    """Each trained model's paths: the first observed component against t, one panel per training
    run, coloured by the initial value; with augmentation, a second row shows the first augmented
    component against the observed one (where the paths go to pass each other)."""
    runs = [r for r in runs if "trajectories" in r]
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
        colours = [cmap(0.5 + 0.5 * s / span) for s in start]
        ax = axes[0][column]
        for b in range(paths.shape[1]):
            ax.plot(t, paths[:, b, 0], color=colours[b], linewidth=1)
        ax.set_title(run["engine"], fontsize=9)
        ax.set_xlabel("t")
        ax.set_ylabel("z₁(t) (observed)")
        ax.grid(True, alpha=0.3)
        if augmented:
            ax = axes[1][column]
            if paths.shape[2] > run["observed_dim"]:
                for b in range(paths.shape[1]):
                    ax.plot(paths[:, b, 0], paths[:, b, run["observed_dim"]], color=colours[b], linewidth=1)
                ax.set_xlabel("z₁ (observed)")
                ax.set_ylabel("first augmented component")
                ax.grid(True, alpha=0.3)
            else:
                ax.axis("off")  # a plain model has no augmented component to draw
    fig.suptitle("Trained models' trajectories from the training states (colour: initial z₁)", fontsize=10)
    fig.tight_layout()
    return fig
