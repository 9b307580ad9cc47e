"""The reproduce report's figures (matplotlib, Agg backend: no display needed).

Their margins are set by hand (`subplots_adjust`) rather than computed (`tight_layout`, a cropped save):
computing them measured every tick label twice more, about half a second of each `harness reproduce`
run (1.5 s -> 0.8 s for the three figures in a fresh process)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.collections import LineCollection  # noqa: E402
import numpy as np  # noqa: E402

from ._forward import SolveOptions, solve_forward  # noqa: E402
from ._io import save_figure  # noqa: E402


def trajectories(model, theta, z0, t0, t1, options: SolveOptions, n_points: int = 50) -> np.ndarray:
    """z at n_points evenly spaced times in [t0, t1]: shape (n_points, B, N), z0 first."""
    times = np.linspace(t0, t1, n_points)[1:]
    sol = solve_forward(model, theta, z0, t0, times, options)
    return np.concatenate([z0[None], sol.z_at_times])


def _draw(ax, paths, color, box=None):
    """paths (n_points, B, N): every trajectory's first two coordinates as one line collection (one
    artist, not B: a thousand `ax.plot` calls took most of `harness reproduce`'s figure time)."""
    lines = LineCollection(np.ascontiguousarray(paths[:, :, :2].transpose(1, 0, 2)), colors=color, alpha=0.2,
                           linewidths=0.8, zorder=1)
    ax.add_collection(lines)
    ax.autoscale_view()
    if box is not None:
        ax.set_xlim(-box, box)
        ax.set_ylim(-box, box)
    ax.set_aspect("equal")
    ax.set_xlabel("$z_1$")
    ax.set_ylabel("$z_2$")


def random_model_grid(model, options: SolveOptions, path, *, seed: int = 1, n_traj: int = 100,
                      t1: float = 10.0, box: float = 10.0) -> None:
    """The tutorial's 3 x 3 grid: trajectories of nine models with random weights."""
    rng = np.random.default_rng(seed)
    fig, axes = plt.subplots(3, 3, figsize=(9, 9))
    for ax in axes.flat:
        theta = model.init(rng)
        z0 = rng.uniform(-box, box, size=(n_traj, model.state_dim))
        paths = trajectories(model, theta, z0, 0.0, t1, options)
        _draw(ax, paths, "green", box)
        ax.scatter(z0[:, 0], z0[:, 1], s=2, color="green", zorder=2)
    fig.suptitle("Neural ODE trajectories with random weights (start marked)", fontsize=14)
    fig.subplots_adjust(left=0.07, right=0.98, bottom=0.06, top=0.93, wspace=0.3, hspace=0.3)
    save_figure(fig, path, crop=False)


def truth_vs_learnt(problem, theta_learnt, options: SolveOptions, path) -> None:
    """Ground truth and learnt model side by side: trajectories, z0 (black), the data (red) and
    the model's own states at every observation time (crosses), so predictions and data can be
    compared point by point."""
    fig, axes = plt.subplots(1, 2, figsize=(12, 6), sharex=True, sharey=True)
    times = ", ".join(f"{t:g}" for t in problem.times)
    data = problem.data.reshape(-1, problem.data.shape[-1])  # every observation time, (K B, N)
    for ax, theta, title, color in (
        (axes[0], problem.theta_true, "Ground truth", "green"),
        (axes[1], theta_learnt, "Learnt model", "blue"),
    ):
        paths = trajectories(problem.model, theta, problem.z0, problem.t0, problem.t1, options)
        predicted = solve_forward(problem.model, theta, problem.z0, problem.t0, problem.times, options)
        predicted = predicted.z_at_times.reshape(-1, problem.data.shape[-1])
        _draw(ax, paths, color)
        ax.scatter(problem.z0[:, 0], problem.z0[:, 1], s=3, color="black", zorder=2, label="$z_0$")
        ax.scatter(data[:, 0], data[:, 1], s=6, color="red", zorder=3, label=f"data at t = {times}")
        ax.scatter(predicted[:, 0], predicted[:, 1], s=10, marker="x", linewidths=0.6, color=color,
                   zorder=4, label=f"{title.lower()} at t = {times}")
        ax.plot([], [], color=color, label="trajectory")
        ax.set_title(title)
        ax.legend(loc="lower right", fontsize=8)
    fig.subplots_adjust(left=0.06, right=0.98, bottom=0.09, top=0.95, wspace=0.1)
    save_figure(fig, path, crop=False)


def training_curve(history, reference, perfect: float, path) -> None:
    """Log-likelihood per datapoint against step, with the tutorial's numbers and the perfect fit."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    steps = [r["step"] for r in history]
    values = [r["loglik_per_datapoint"] for r in history]
    # distance to the perfect fit on a log scale shows both the fast start and the slow tail
    ax.semilogy(steps, [perfect - v for v in values], "o-", ms=3, label="harness")
    if reference:
        ax.semilogy([s for s, _ in reference], [perfect - v for _, v in reference], "s--", ms=3,
                    color="gray", label="tutorial (TensorFlow + vode)")
    ax.set_xlabel("training step")
    ax.set_ylabel(f"gap to perfect fit: {perfect:.3f} − log-likelihood per datapoint")
    ax.set_title("Training curve")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.subplots_adjust(left=0.12, right=0.97, bottom=0.12, top=0.93)
    save_figure(fig, path, crop=False)
