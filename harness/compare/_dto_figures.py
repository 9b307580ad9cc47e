"""The otd_vs_dto kind's figures: both errors against the tolerance, and memory against the steps."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import NullFormatter, ScalarFormatter  # noqa: E402

from ._figures import engine_colour  # noqa: E402

# engines whose curves coincide (QuadratureAdjoint and GaussAdjoint sum the same Gauss nodes) stay
# visible: each engine its own marker and dash
_STYLES = [("o", "-"), ("s", "--"), ("^", "-."), ("D", ":"), ("v", "-"), ("x", "--")]

# a zero distance (the DTO engine to itself) cannot sit on a log axis: drawn at this floor, marked
FLOOR = 1e-17


def errors(rows: list[dict], solver: str):
    """Left: distance to the ODE's gradient; right: to the discrete loss's gradient; log-log."""
    rows = [r for r in rows if r["role"] == "errors" and r["status"] == "ok"]
    if not rows:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharex=True)
    engines = list(dict.fromkeys(r["engine"] for r in rows))
    for ax, key, title in ((axes[0], "ode_error", "against the ODE's gradient (tight reference)"),
                           (axes[1], "discrete_error", "against the discrete loss's gradient (same steps)")):
        for i, engine in enumerate(engines):
            mine = sorted((r for r in rows if r["engine"] == engine), key=lambda r: r["rtol"])
            xs = [r["rtol"] for r in mine]
            ys = [max(r[key], FLOOR) for r in mine]
            marker, dash = _STYLES[i % len(_STYLES)]
            ax.plot(xs, ys, marker=marker, linestyle=dash, markerfacecolor="none" if i % 2 else None,
                    color=engine_colour(engine), label=engine)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(f"rtol = atol ({solver})")
        ax.set_title(title, fontsize=10)
        ax.grid(True, which="major", alpha=0.3)
    axes[0].set_ylabel("relative error of dL/dθ (2-norm)")
    axes[1].axhline(2.2e-16, color="0.6", linestyle=":", linewidth=1)
    axes[1].text(axes[1].get_xlim()[0], 3e-16, " double precision", fontsize=7, color="0.4", va="bottom")
    axes[1].annotate(f"points at {FLOOR:g}: exactly 0 (the DTO gradient itself)", xy=(0.02, 0.02),
                     xycoords="axes fraction", fontsize=7, color="0.4")
    axes[0].legend(fontsize=8, loc="best")
    fig.tight_layout()
    return fig


def memory_against_steps(rows: list[dict], solver: str, tolerance: float):
    """Peak traced memory of one gradient against the number of accepted forward steps, log-log."""
    rows = [r for r in rows if r["role"] == "memory" and r["status"] == "ok" and r.get("peak_memory_bytes")]
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    for i, engine in enumerate(dict.fromkeys(r["engine"] for r in rows)):
        mine = sorted((r for r in rows if r["engine"] == engine), key=lambda r: r["n_steps"])
        marker, dash = _STYLES[i % len(_STYLES)]
        ax.plot([r["n_steps"] for r in mine], [r["peak_memory_bytes"] / 2**20 for r in mine], marker=marker,
                linestyle=dash, color=engine_colour(engine), label=engine)
    # the horizons once, above the axis: every engine solves the same forward steps
    steps = sorted({(r["n_steps"], r["horizon"]) for r in rows})
    ax.set_xscale("log")
    ax.set_yscale("log")
    top = ax.secondary_xaxis("top")
    top.set_xticks([n for n, _ in steps], [f"t1 = {h:g}" for _, h in steps], fontsize=8)
    top.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xticks([n for n, _ in steps])
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel(f"accepted forward steps ({solver}, rtol = atol = {tolerance:g}; horizon lengthened)")
    ax.set_ylabel("peak traced memory of one gradient (MiB)")
    ax.set_title("Memory against the number of steps", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    return fig
