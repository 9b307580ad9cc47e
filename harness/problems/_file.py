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
`save_problem`. `load_problem` checks every key and says exactly what is wrong with a bad file: before
decompressing anything, that it is an .npz of plain arrays whose declared sizes fit the memory
available and agree with each other (`harness._archive`); then that every number is real (no complex
or text where numbers go), and that the problem can be solved in float64 at all (`_check_solvable`).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ..errors import HarnessInputError
from .._archive import read_npz
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
    from .._memory_budget import available_memory

    arrays = read_npz(path, label, max_bytes=available_memory()[0] // 2,
                      check=lambda members: _check_declared_shapes(members, label))
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
    _check_kinds(arrays, label)
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
        problem = Problem(
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
        _check_solvable(problem)
        return problem
    except HarnessInputError as err:
        raise HarnessInputError(f"{label}: {err}") from None
    except (TypeError, ValueError) as err:
        raise HarnessInputError(f"{label}: {err}") from None


# The keys that hold text, and those that hold numbers (bools are numbers here: `time_dependent`, `mask`).
TEXT_KEYS = ("format", "activation", "name")
NUMERIC_KINDS = "biuf"  # bool, signed and unsigned integers, real floats: never complex, text or bytes


def _check_kinds(arrays: dict, label: str) -> None:
    """Text where text goes, real numbers where numbers go: a complex `data` would otherwise lose its
    imaginary part without a word when it is cast to float64."""
    for key, value in arrays.items():
        if key in TEXT_KEYS:
            if value.dtype.kind not in "US":
                raise HarnessInputError(f"{label}: {key} is {value.dtype}: expected a string")
        elif value.dtype.kind not in NUMERIC_KINDS:
            what = "complex numbers" if value.dtype.kind == "c" else f"{value.dtype}"
            raise HarnessInputError(f"{label}: {key} holds {what}: expected real numbers (float64)")


def _check_declared_shapes(members: dict, label: str) -> None:
    """Before decompressing: the large arrays' declared shapes must agree with z0's and times'
    (data (K, B, N), mask (K, B)), so that a file cannot declare gigabytes that no problem uses."""
    z0, times = members.get("z0"), members.get("times")
    if z0 is None or times is None or len(z0.shape) != 2 or len(times.shape) != 1:
        return  # the full validation names what is wrong
    (batch, n), (k,) = z0.shape, times.shape
    expected = {"data": (k, batch, n), "mask": (k, batch)}
    for key, shape in expected.items():
        member = members.get(key)
        if member is not None and member.shape != shape:
            raise HarnessInputError(f"{label}: {key} declares shape {member.shape}: expected {shape} "
                                    f"(K = {k} times, B = {batch} states of N = {n} from times and z0)")
    for key in ("theta_true",):
        if key in members and "theta" in members and members[key].shape != members["theta"].shape:
            raise HarnessInputError(f"{label}: {key} declares shape {members[key].shape}: expected "
                                    f"{members['theta'].shape}, theta's")


# Solvers refuse a step below 10 float spacings of t; a span of fewer than this many cannot be solved.
MIN_SPACINGS = 100
# The square of a state or a derivative must stay finite in float64 (error norms and the loss square
# them): below sqrt(max float64) ~ 1.3e154.
LARGEST_SQUARABLE = math.sqrt(np.finfo(np.float64).max)


def _check_solvable(problem) -> None:
    """Refuse what no float64 solve can do, before a solver grinds at it or fails with a message
    about something else:

    - observation times (and t0) closer than `MIN_SPACINGS` float spacings: the solvers would report
      a step size collapse ("blows up in finite time") on a span of a few ulps;
    - a decay Λ whose negative entries make the state grow by more than `LARGEST_SQUARABLE` over the
      span (e^{|λ| (t_K - t0)}: the loss overflows, and an implicit reference takes hours to find out);
    - a decay so large that Λ z overflows when squared (the Newton matrix becomes singular in float64).
    """
    points = np.concatenate(([problem.t0], problem.times))
    names = ["t0", *(f"times[{k}]" for k in range(problem.times.size))]
    for i, (a, b) in enumerate(zip(points[:-1], points[1:])):
        spacing = np.spacing(max(abs(a), abs(b)))
        if b - a < MIN_SPACINGS * spacing:
            raise HarnessInputError(
                f"{names[i]} = {float(a)!r} and {names[i + 1]} = {float(b)!r} are {(b - a) / spacing:.0f} float "
                f"spacings apart: expected at least {MIN_SPACINGS} (merge them into one observation, or "
                "rescale time)")
    decay = problem.model.decay
    if decay is None:
        return
    if not np.all(np.isfinite(decay)):
        raise HarnessInputError(f"decay {decay.tolist()} is not finite: expected finite numbers")
    span = float(points[-1] - points[0])
    growth = float(-np.min(decay)) * span
    if growth > math.log(LARGEST_SQUARABLE):
        raise HarnessInputError(
            f"decay {float(np.min(decay)):g} makes the state grow like e^({-float(np.min(decay)):g} t), by "
            f"e^{growth:.3g} over the span {span:g}: beyond float64 (the loss would overflow); expected "
            f"min(decay) x span >= {-math.log(LARGEST_SQUARABLE):.0f}")
    scale = max(1.0, float(np.max(np.abs(problem.z0))), float(np.nanmax(np.abs(problem.data), initial=0.0)))
    largest = float(np.max(np.abs(decay)))
    if largest * scale > LARGEST_SQUARABLE:
        raise HarnessInputError(
            f"decay {largest:g} times states of size {scale:g} gives derivatives of {largest * scale:.3g}, whose "
            f"squares overflow float64: expected |decay| x max|z| <= {LARGEST_SQUARABLE:.2g} (rescale the problem)")
