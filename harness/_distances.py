"""How far a gradient is from its reference: the two measures shared by `harness gradcheck`, the
comparison reports (`harness.compare`) and the Julia self-test, kept here so that none of them
imports another (the comparison package takes a second to import; gradcheck must not need it).

For a gradient g and a reference r, any shape, compared as flat vectors:

- relative error (norm-wise):   ‖g - r‖₂ / ‖r‖₂ (the absolute ‖g - r‖₂ when r = 0)
- worst entry:                  max_i |g_i - r_i| / max_j |r_j|, and the i where it happens.
  Scaled by the largest reference entry, not by |r_i|, so that an entry that is nearly zero in the
  reference (common for biases) does not turn rounding into an "error" of 100%.
"""

from __future__ import annotations

import numpy as np


def relative_error(g, r) -> float:
    """‖g - r‖₂ / ‖r‖₂ over flat vectors; ‖g - r‖₂ when r is zero."""
    g, r = np.ravel(g), np.ravel(r)
    scale = np.linalg.norm(r)
    diff = np.linalg.norm(g - r)
    return float(diff / scale) if scale > 0 else float(diff)


def worst_entry(g, r) -> tuple[float, int]:
    """(max_i |g_i - r_i| / max_j |r_j|, argmax i) over flat vectors."""
    g, r = np.ravel(g), np.ravel(r)
    diff = np.abs(g - r)
    i = int(np.argmax(diff))
    scale = float(np.max(np.abs(r)))
    return (float(diff[i] / scale) if scale > 0 else float(diff[i])), i
