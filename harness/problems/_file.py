"""Problems as files: a documented .npz format that any tool can write and the harness reads.

| key | shape | dtype | meaning |
|---|---|---|---|
| `format` | () | str | `"harness-problem-1"` |
| `widths` | (L + 1,) | int | layer widths (N + A, H1, ..., N + A) |
| `activation` | () | str | `"tanh"`, `"sigmoid"` or `"softplus"` |
| `theta` | (P,) | float64 | flat parameters, layout W1 (H1, N + A) row-major, b1, W2, b2, ... |
| `z0` | (B, N) | float64 | initial states (observed components) |
| `t0` | () | float64 | initial time |
| `times` | (K,) | float64 | observation times, t0 < t_1 < ... < t_K |
| `data` | (K, B, N) | float64 | observations of z(t_k) |
| `decay` | (N + A,) | float64 | optional: diagonal of Λ (stiff variant f = -Λ z + MLP(z)) |
| `theta_true` | (P,) | float64 | optional: the weights that generated the data |
| `name` | () | str | optional |
| `augment` | () | int | optional, default 0: A augmented dimensions, started at 0, unobserved |
| `time_dependent` | () | bool | optional, default false: f(z, t) = MLP([z, t]), W1 is (H1, N + A + 1) |
| `mask` | (K, B) | bool | optional, default all true: whether state b is observed at t_k |

A is 0 unless `augment` says otherwise. With a `mask`, `data` where the mask is false is ignored
(write 0 or NaN there); per-trajectory observation times go on the grid of all of them (the
union), with the mask saying which trajectory is observed when (`harness.problems.grid_and_mask`).
Files written before `augment`, `time_dependent` and `mask` existed load unchanged.

Write one with `numpy.savez(path, **arrays)` from any language that can produce .npz, or with
`save_problem`. `load_problem` checks every key and says exactly what is wrong with a bad file.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from ..errors import HarnessInputError
from .._io import atomic_path
from ..model import MLP
from ._problem import Problem

FORMAT = "harness-problem-1"
REQUIRED = ("widths", "activation", "theta", "z0", "t0", "times", "data")
OPTIONAL = ("format", "decay", "theta_true", "name", "augment", "time_dependent", "mask")


def save_problem(problem: Problem, path) -> Path:
    """Write `problem` to `path` (.npz), atomically."""
    path = Path(path)
    arrays = {
        "format": np.array(FORMAT),
        "widths": np.array(problem.model.widths, dtype=np.int64),
        "activation": np.array(problem.model.activation),
        "theta": problem.theta,
        "z0": problem.observed_z0,
        "t0": np.array(problem.t0),
        "times": problem.times,
        "data": problem.data,
        "name": np.array(problem.name),
    }
    if problem.model.decay is not None:
        arrays["decay"] = problem.model.decay
    if problem.theta_true is not None:
        arrays["theta_true"] = problem.theta_true
    # the new keys only where they say something, so that plain problems stay readable by older tools
    if problem.augment:
        arrays["augment"] = np.array(problem.augment, dtype=np.int64)
    if problem.model.time_dependent:
        arrays["time_dependent"] = np.array(True)
    if problem.mask is not None:
        arrays["mask"] = problem.mask
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:
            np.savez(handle, **arrays)
    return path


def load_problem(path) -> Problem:
    """Read and validate a problem file; HarnessInputError names the first thing wrong with it."""
    path = Path(path)
    label = f"problem file {str(path)!r}"
    if not path.is_file():
        raise HarnessInputError(f"{label} does not exist")
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in npz.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as err:
        raise HarnessInputError(f"{label} is not a readable .npz file ({err})") from None
    missing = [key for key in REQUIRED if key not in arrays]
    if missing:
        raise HarnessInputError(f"{label} is missing {missing}: a problem file needs {list(REQUIRED)}")
    unknown = sorted(set(arrays) - set(REQUIRED) - set(OPTIONAL))
    if unknown:
        raise HarnessInputError(f"{label} has unknown keys {unknown}: expected {list(REQUIRED + OPTIONAL)}")
    if "format" in arrays and str(arrays["format"]) != FORMAT:
        raise HarnessInputError(f"{label} has format {str(arrays['format'])!r}: expected {FORMAT!r}")
    widths = arrays["widths"]
    if widths.ndim != 1 or not np.issubdtype(widths.dtype, np.integer):
        raise HarnessInputError(f"{label}: widths must be a 1-D integer array, got {widths.dtype} {widths.shape}")
    expected = {"augment": ("iu", "an integer scalar"), "time_dependent": ("b", "a bool scalar"),
                "mask": ("b", "a bool array (K, B)")}
    for key, (kinds, what) in expected.items():
        value = arrays.get(key)
        if value is not None and (value.dtype.kind not in kinds or (key != "mask" and value.shape != ())):
            raise HarnessInputError(f"{label}: {key} is {value.dtype} {value.shape}: expected {what}")
    try:
        model = MLP(
            tuple(int(w) for w in widths),
            activation=str(arrays["activation"]),
            decay=arrays.get("decay"),
            time_dependent=bool(arrays["time_dependent"]) if "time_dependent" in arrays else False,
        )
        t0 = arrays["t0"]
        if t0.shape != ():
            raise HarnessInputError(f"t0 has shape {t0.shape}: expected a scalar")
        return Problem(
            model=model,
            theta=arrays["theta"],
            z0=arrays["z0"],
            t0=float(t0),
            times=arrays["times"],
            data=arrays["data"],
            name=str(arrays["name"]) if "name" in arrays else path.stem,
            theta_true=arrays.get("theta_true"),
            augment=int(arrays["augment"]) if "augment" in arrays else 0,
            mask=arrays.get("mask"),
        )
    except HarnessInputError as err:
        raise HarnessInputError(f"{label}: {err}") from None
    except (TypeError, ValueError) as err:
        raise HarnessInputError(f"{label}: {err}") from None
