"""The coefficients of the explicit Runge-Kutta pairs DP5 and BS3, written out.

They are the numbers of scipy's `RK45` (Dormand-Prince 5(4), with Shampine's 4th-order dense output)
and `RK23` (Bogacki-Shampine 3(2), cubic Hermite dense output), the same fractions evaluated to the
same float64 values, so a step here is scipy's step (`tests/test_solvers.py` checks every array bit
for bit). They are written here rather than read from `scipy.integrate` because importing that
package is what a gradient would otherwise pay for them: 29 MB of peak resident memory on the numpy
path (79 MB with it, 50 MB without), 23 MB with numba loaded (`python benchmarks/bench_memory.py`).
scipy's own methods (DP8, Radau, BDF) are imported when one is first used.

Shapes, for s stages: A (s, s), B (s,), C (s,), E (s + 1,), P (s + 1, degree).
"""

from __future__ import annotations

import numpy as np

from ._rk_step import Tableau


def _array(rows) -> np.ndarray:
    # writeable, as scipy's: the compiled loop receives these arrays, and numba compiles a separate
    # specialisation for read-only arrays (a second copy of the loop in memory)
    return np.array(rows, dtype=np.float64)


DORMAND_PRINCE_54 = Tableau(
    A=_array([
        [0, 0, 0, 0, 0],
        [1 / 5, 0, 0, 0, 0],
        [3 / 40, 9 / 40, 0, 0, 0],
        [44 / 45, -56 / 15, 32 / 9, 0, 0],
        [19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729, 0],
        [9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656],
    ]),
    B=_array([35 / 384, 0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84]),
    C=_array([0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1]),
    E=_array([-71 / 57600, 0, 71 / 16695, -71 / 1920, 17253 / 339200, -22 / 525, 1 / 40]),
    P=_array([
        [1, -8048581381 / 2820520608, 8663915743 / 2820520608, -12715105075 / 11282082432],
        [0, 0, 0, 0],
        [0, 131558114200 / 32700410799, -68118460800 / 10900136933, 87487479700 / 32700410799],
        [0, -1754552775 / 470086768, 14199869525 / 1410260304, -10690763975 / 1880347072],
        [0, 127303824393 / 49829197408, -318862633887 / 49829197408, 701980252875 / 199316789632],
        [0, -282668133 / 205662961, 2019193451 / 616988883, -1453857185 / 822651844],
        [0, 40617522 / 29380423, -110615467 / 29380423, 69997945 / 29380423],
    ]),
    order=5,
    error_order=4,
)

BOGACKI_SHAMPINE_32 = Tableau(
    A=_array([
        [0, 0, 0],
        [1 / 2, 0, 0],
        [0, 3 / 4, 0],
    ]),
    B=_array([2 / 9, 1 / 3, 4 / 9]),
    C=_array([0, 1 / 2, 3 / 4]),
    E=_array([5 / 72, -1 / 12, -1 / 9, 1 / 8]),
    P=_array([
        [1, -4 / 3, 5 / 9],
        [0, 1, -2 / 3],
        [0, 4 / 3, -8 / 9],
        [0, -1, 1],
    ]),
    order=3,
    error_order=2,
)
