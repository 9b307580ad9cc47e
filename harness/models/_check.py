"""The derivative checker: every derivative a model supplies against differences of its own f.

A wrong hand-written VJP silently corrupts every adjoint (the adjoints agree with each other, all
wrong), so before trusting a model, compare what it says its derivatives are with what its f does:

    vjp.f       the f that vjp returns      against f itself
    vjp.z       (∂f/∂z)ᵀ a                   against Σ_i a_i (f(z + h e_j) - f(z - h e_j))_i / 2h
    vjp.theta   Σ_b (∂f_b/∂θ)ᵀ a_b           against the same differences in θ
    vjp.per_sample  row b of per_sample=True against row b of those differences
    jac         ∂f/∂z (B, N, N)              against the z differences
    jac_theta   ∂f/∂θ (B, N, P)              against the θ differences

at random states, times, cotangents and (when the model has `init`) parameters. Central differences
with h = ε^(1/3) max(1, |x|) have error ~ε^(2/3) ≈ 4e-11 relative for a smooth f; with
`method="complex"` (f must accept complex input) the derivative is Im f(x + i h e) / h with h = 1e-20,
exact to rounding. The default bound, 1e-6 relative, is far above either and far below the O(1) error
of a transposed, mis-signed or mis-indexed derivative. The models for the report are torch's
`gradcheck` and JAX's `check_grads`.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import asdict, dataclass, field

import numpy as np

from ..errors import HarnessInputError
from ._protocol import check_protocol, entry_names

DEFAULT_BOUND = 1e-6
CHECK_VARIABLE = "HARNESS_CHECK_MODEL"  # 0 switches off the check `gradient` runs once per model type


@dataclass
class MethodCheck:
    """One derivative's agreement with differences of f."""

    method: str
    relative_error: float  # ‖got - expected‖ / ‖expected‖ over every point checked
    worst_entry: str  # where |got - expected| is largest, e.g. "point 1, row 0, theta 'beta'"
    worst_got: float
    worst_expected: float
    bound: float

    @property
    def ok(self) -> bool:
        return bool(self.relative_error <= self.bound)


@dataclass
class ModelCheck:
    """The report of `check_model`: one `MethodCheck` per derivative the model supplies."""

    model: str
    difference: str
    points: int
    batch: int
    methods: list[MethodCheck] = field(default_factory=list)
    skipped: dict = field(default_factory=dict)  # method -> why it was not checked

    @property
    def ok(self) -> bool:
        return all(m.ok for m in self.methods)

    @property
    def failed(self) -> list[str]:
        return [m.method for m in self.methods if not m.ok]

    def as_dict(self) -> dict:
        return {"model": self.model, "difference": self.difference, "points": self.points,
                "batch": self.batch, "ok": self.ok,
                "methods": [dict(asdict(m), ok=m.ok) for m in self.methods], "skipped": self.skipped}

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), indent=2)

    def format(self) -> str:
        lines = [f"{self.model}: {self.difference} differences at {self.points} random point(s) of {self.batch} rows",
                 f"  {'method':18s} {'rel. error':>11s} {'bound':>8s}  worst entry (got / expected)"]
        for m in self.methods:
            status = "ok" if m.ok else "WRONG"
            lines.append(f"  {m.method:18s} {m.relative_error:11.2e} {m.bound:8.0e}  {m.worst_entry} "
                         f"({m.worst_got:.6g} / {m.worst_expected:.6g})  {status}")
        for method, why in self.skipped.items():
            lines.append(f"  {method:18s} not checked: {why}")
        return "\n".join(lines)


def check_model(model, *, theta=None, z=None, points: int = 3, batch: int = 4, seed: int = 0,
                method: str = "central", bound: float = DEFAULT_BOUND, t_range=(0.0, 1.0)) -> ModelCheck:
    """Test `vjp` (its f, z and θ parts), `jac` and `jac_theta` against differences of `f`.

    Parameters
    ----------
    model : a model (harness.models.VectorField or any object with the protocol's names)
    theta : ndarray, shape (P,), optional
        Where to check; default `model.init(rng)` at each point (random parameters).
    z : ndarray, shape (B, N), optional
        The states; default standard normal rows (B = `batch`), new at each point.
    points : int
        How many random (t, z, θ, a) to check at.
    method : "central" or "complex"
        Central differences (any f), or complex step (f must compute with complex numbers).
    bound : float
        The relative error above which a method is reported wrong.

    Returns
    -------
    ModelCheck
        Per method: relative error, the worst entry, ok. `.format()` prints it, `.to_json()` too.
    """
    check_protocol(model)
    if method not in ("central", "complex"):
        raise HarnessInputError(f"method={method!r}: expected 'central' or 'complex'")
    rng = np.random.default_rng(seed)
    n, n_params = int(model.state_dim), int(model.n_params)
    names = entry_names(model)
    pairs: dict[str, list] = {}  # method -> [(got, expected, labels)] over points
    skipped = {}
    has_jac = getattr(model, "jac", None) is not None
    has_jac_theta = getattr(model, "jac_theta", None) is not None
    if not has_jac:
        skipped["jac"] = "the model has no jac"
    if not has_jac_theta:
        skipped["jac_theta"] = "the model has no jac_theta"
    for point in range(points):
        th = _theta_at(model, theta, rng)
        zz = rng.standard_normal((batch, n)) if z is None else np.array(z, dtype=np.float64)
        rows = zz.shape[0]
        t = float(rng.uniform(*t_range))
        a = rng.standard_normal((rows, n))
        d_z = _differences(lambda x, t=t, th=th: model.f(t, x, th), zz, method)  # (N, B, N): ∂f/∂z_j per row
        d_theta = _differences_theta(lambda p, t=t, zz=zz: model.f(t, zz, p), th, method)  # (P, B, N)
        f, a_z, a_theta = model.vjp(t, zz, th, a)
        where = f"point {point}"
        pairs.setdefault("vjp.f", []).append((np.asarray(f), model.f(t, zz, th),
                                              _labels_rows(where, rows, n, "f")))
        pairs.setdefault("vjp.z", []).append((np.asarray(a_z), np.einsum("jbi,bi->bj", d_z, a),
                                              _labels_rows(where, rows, n, "z")))
        pairs.setdefault("vjp.theta", []).append((np.asarray(a_theta), np.einsum("pbi,bi->p", d_theta, a),
                                                  [f"{where}, theta {names[p]!r}" for p in range(n_params)]))
        try:
            per_row = model.vjp(t, zz, th, a, per_sample=True)[2]
        except (TypeError, NotImplementedError) as err:
            skipped["vjp.per_sample"] = f"vjp(per_sample=True) failed: {err}"
        else:
            pairs.setdefault("vjp.per_sample", []).append((
                np.asarray(per_row), np.einsum("pbi,bi->bp", d_theta, a),
                [f"{where}, row {b}, theta {names[p]!r}" for b in range(rows) for p in range(n_params)]))
        if has_jac:
            pairs.setdefault("jac", []).append((np.asarray(model.jac(t, zz, th)), d_z.transpose(1, 2, 0),
                                                [f"{where}, row {b}, ∂f{i}/∂z{j}" for b in range(rows)
                                                 for i in range(n) for j in range(n)]))
        if has_jac_theta:
            pairs.setdefault("jac_theta", []).append((
                np.asarray(model.jac_theta(t, zz, th)), d_theta.transpose(1, 2, 0),
                [f"{where}, row {b}, ∂f{i}/∂{names[p]}" for b in range(rows) for i in range(n)
                 for p in range(n_params)]))
    report = ModelCheck(_describe(model), method, points, batch, skipped=skipped)
    for name, items in pairs.items():
        report.methods.append(_compare(name, items, bound))
    return report


def _describe(model) -> str:
    try:
        return model.describe()
    except Exception:  # a failing describe must not hide the check
        return type(model).__name__


def _theta_at(model, theta, rng):
    if theta is not None:
        return np.array(model.check_theta(theta) if hasattr(model, "check_theta") else theta, dtype=np.float64)
    init = getattr(model, "init", None)
    try:
        return np.asarray(init(rng), dtype=np.float64)
    except (HarnessInputError, TypeError, NotImplementedError):
        raise HarnessInputError(
            f"{_describe(model)} has no init(rng) to draw parameters from: pass theta ({model.n_params} numbers)"
        ) from None


def _step(x: np.ndarray, method: str) -> np.ndarray:
    if method == "complex":
        return np.full(x.shape, 1e-20)
    return np.finfo(float).eps ** (1 / 3) * np.maximum(1.0, np.abs(x))


def _differences(func, z: np.ndarray, method: str) -> np.ndarray:
    """∂f/∂z_j for each component j, all rows at once (rows do not interact): (N, B, N)."""
    n = z.shape[1]
    h = _step(z, method)
    out = []
    for j in range(n):
        out.append(_derivative(func, z, j, h[:, j], method, axis_column=True))
    return np.array(out)


def _differences_theta(func, theta: np.ndarray, method: str) -> np.ndarray:
    """∂f/∂θ_p for each p: (P, B, N)."""
    h = _step(theta, method)
    return np.array([_derivative(func, theta, p, h[p], method, axis_column=False) for p in range(theta.size)])


def _derivative(func, x, index, h, method, axis_column: bool):
    def shifted(delta):
        y = x.astype(complex if method == "complex" else float, copy=True)
        if axis_column:
            y[:, index] += delta
        else:
            y[index] += delta
        return y

    if method == "complex":
        try:
            value = func(shifted(1j * h))
        except (TypeError, ValueError) as err:
            raise HarnessInputError(
                f"complex step: f does not accept complex input ({err}); use method='central'"
            ) from None
        h_col = h[:, None] if axis_column else h
        return np.imag(value) / h_col
    h_col = h[:, None] if axis_column else h
    return (np.asarray(func(shifted(h))) - np.asarray(func(shifted(-h)))) / (2 * h_col)


def _labels_rows(where: str, rows: int, n: int, what: str) -> list[str]:
    return [f"{where}, row {b}, {what}[{i}]" for b in range(rows) for i in range(n)]


def _compare(name: str, items, bound: float) -> MethodCheck:
    got = np.concatenate([np.asarray(g, dtype=np.float64).reshape(-1) for g, _, _ in items])
    expected = np.concatenate([np.asarray(e, dtype=np.float64).reshape(-1) for _, e, _ in items])
    labels = [label for _, _, ls in items for label in ls]
    if got.shape != expected.shape:
        return MethodCheck(name, float("inf"), f"shape {got.shape} where {expected.shape} was expected",
                           float("nan"), float("nan"), bound)
    diff = np.abs(got - expected)
    norm = np.linalg.norm(expected)
    relative = float(np.linalg.norm(got - expected) / norm) if norm > 0 else float(np.linalg.norm(got - expected))
    if not np.isfinite(relative):
        relative = float("inf")
    worst = int(np.nanargmax(diff)) if diff.size and not np.all(np.isnan(diff)) else 0
    return MethodCheck(name, relative, labels[worst] if labels else "-", float(got[worst]) if got.size else 0.0,
                       float(expected[worst]) if expected.size else 0.0, bound)


# ------------------------------------------------------------------ the check `gradient` runs
_checked: set = set()
_lock = threading.Lock()


def check_enabled() -> bool:
    return os.environ.get(CHECK_VARIABLE, "").strip().lower() not in ("0", "off", "false", "no")


def check_once(model, theta) -> None:
    """The cheap check `harness.gradient` runs on the first gradient of each model type (one point,
    two rows, at the gradient's θ); a wrong derivative is one line naming the method. The models of
    `harness.models` are checked by the test suite and skipped; ``HARNESS_CHECK_MODEL=0`` switches it
    off."""
    kind = type(model)
    if kind.__module__.startswith("harness.models") or not check_enabled():
        return
    with _lock:
        if kind in _checked:
            return
        _checked.add(kind)
    report = check_model(model, theta=theta, points=1, batch=2, bound=1e-5)
    if not report.ok:
        worst = next(m for m in report.methods if not m.ok)
        with _lock:
            _checked.discard(kind)
        raise HarnessInputError(
            f"{report.model}: model.{worst.method} disagrees with finite differences of f (relative error "
            f"{worst.relative_error:.1e}, worst at {worst.worst_entry}: {worst.worst_got:.6g} vs "
            f"{worst.worst_expected:.6g}); run harness.check_model for the full report, or set "
            f"{CHECK_VARIABLE}=0 to skip this check"
        )
