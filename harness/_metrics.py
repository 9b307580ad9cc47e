"""How far apart two gradients are: the measures every comparison (`harness.compare`) and `harness.testing` use.

For a gradient g and a reference r (flat vectors):

- relative error (norm-wise):   ‖g - r‖₂ / ‖r‖₂
- worst entry:                  max_i |g_i - r_i| / max_j |r_j|, and the i where it happens.
  Scaled by the largest reference entry, not by |r_i|, so that an entry that is nearly zero in the
  reference (common for biases) does not turn rounding into an "error" of 100%.
- cosine similarity:            g·r / (‖g‖ ‖r‖); 1 when the directions agree (what Adam mostly uses).
"""

from __future__ import annotations

import numpy as np

from ._distances import relative_error, worst_entry  # noqa: F401 - shared with gradcheck

WRT = ("dtheta", "dz0")  # dL/dθ and dL/dz0


def cosine_similarity(g, r) -> float:
    g, r = np.ravel(g), np.ravel(r)
    denominator = np.linalg.norm(g) * np.linalg.norm(r)
    return float(g @ r / denominator) if denominator > 0 else float("nan")


def compare_vectors(g, r, names=None) -> dict:
    """All three measures of g against r; `names` (flat index -> name) labels the worst entry."""
    worst, i = worst_entry(g, r)
    return {
        "relative_error": relative_error(g, r),
        "worst_entry": worst,
        "worst_index": i,
        "worst_name": names[i] if names is not None else str(i),
        "cosine": cosine_similarity(g, r),
    }


def parameter_names(model) -> list[str]:
    """A name per entry of θ, from `model.layout`: ["W1[0,0]", "W1[0,1]", ..., "b2[1]"]."""
    names = []
    for view in model.layout:
        for index in np.ndindex(*view.shape):
            names.append(f"{view.name}[{','.join(map(str, index))}]")
    return names


def state_names(batch: int, n: int) -> list[str]:
    """A name per entry of z0 (B, N), row-major: ["z0[0,0]", "z0[0,1]", ...]."""
    return [f"z0[{b},{i}]" for b in range(batch) for i in range(n)]
