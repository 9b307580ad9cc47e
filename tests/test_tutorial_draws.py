"""The tutorial's stored draws (harness/problems/_tutorial_draws.py), every one of the 34 entries,
against an independent re-implementation of the generator TensorFlow drew them with.

`tf.random.set_seed(s)` seeds Python's `random.Random(s)`, from which each later `tf.random.normal`
without its own seed takes its op seed (`randint(0, 2**31 - 1)`); the op fills its output from
Philox4x32-10 keyed by the global seed, with the op seed in the counter's upper half, four outputs
per Philox call, each pair through Box-Muller in float32 (TensorFlow's `NormalDistribution`), then
scales by the standard deviation in float32. Written here from that description in plain Python
integers (numpy's `Philox` is the 4x64 variant, not TensorFlow's 4x32), it needs no TensorFlow and
shares nothing with the stored hex literals, so a changed digit in any entry, a swapped entry or a
shape read in the wrong order fails here. `tools/tutorial_draws.py` is the check with TensorFlow
itself.
"""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from harness.problems._tutorial_draws import GROUND_TRUTH_HEX, LEARNT_INIT_HEX, SHAPES, tutorial_weights

MASK32 = 0xFFFFFFFF
MAXINT32 = 2**31 - 1  # TensorFlow's bound for op seeds and its seed truncation


def philox4x32(counter: list[int], key: list[int]) -> list[int]:
    """Ten rounds of Philox4x32 (Salmon et al. 2011, with TensorFlow's constants)."""
    c, k = list(counter), list(key)
    for _ in range(10):
        p0, p1 = 0xD2511F53 * c[0], 0xCD9E8D57 * c[2]
        c = [(p1 >> 32) ^ c[1] ^ k[0], p1 & MASK32, (p0 >> 32) ^ c[3] ^ k[1], p0 & MASK32]
        k = [(k[0] + 0x9E3779B9) & MASK32, (k[1] + 0xBB67AE85) & MASK32]
    return c


def uniform_float32(x: int) -> np.float32:
    """TensorFlow's Uint32ToFloat: 23 random mantissa bits in [1, 2), minus one."""
    return np.array([(x & 0x7FFFFF) | (127 << 23)], dtype=np.uint32).view(np.float32)[0] - np.float32(1.0)


def standard_normal_float32(seed: int, seed2: int, n: int) -> np.ndarray:
    """`RandomStandardNormal` with seeds (seed, seed2) on the CPU: Box-Muller on Philox outputs."""
    key = [seed & MASK32, seed >> 32]
    out = []
    for block in range(-(-n // 4)):
        sample = philox4x32([block, 0, seed2 & MASK32, seed2 >> 32], key)
        for i in (0, 2):
            u1 = max(uniform_float32(sample[i]), np.float32(1e-7))
            v1 = np.float32(2.0 * math.pi * float(uniform_float32(sample[i + 1])))  # 2.0f * M_PI: a double
            # float32 sqrt, log, sin, cos: the correctly rounded values (glibc's are, for these arguments)
            u2 = np.float32(math.sqrt(np.float32(-2.0) * np.float32(math.log(u1))))
            out += [np.float32(math.sin(v1)) * u2, np.float32(math.cos(v1)) * u2]
    return np.array(out[:n], dtype=np.float32)


def tutorial_node(global_seed: int) -> dict[str, np.ndarray]:
    """`tf.random.set_seed(global_seed); NODE(hidden_size=3, state_size=2)`: four normal draws."""
    op_seeds = random.Random(global_seed)
    draws = {}
    for name, stddev in (("W1", 2**-0.5), ("b1", 1.0), ("W2", 3**-0.5), ("b2", 1.0)):
        seeds = (global_seed % MAXINT32, op_seeds.randint(0, MAXINT32) % MAXINT32)
        if seeds == (0, 0):  # TensorFlow avoids the pair that means "nondeterministic"
            seeds = (0, MAXINT32)
        shape = SHAPES[name]
        values = standard_normal_float32(*seeds, math.prod(shape)) * np.float32(stddev) + np.float32(0.0)
        draws[name] = values.reshape(shape)
    return draws


@pytest.mark.parametrize("which, seed, hexes", [("ground_truth", 0, GROUND_TRUTH_HEX),
                                                ("learnt_init", 1, LEARNT_INIT_HEX)])
def test_every_stored_draw_is_the_generators_value_bit_for_bit(which, seed, hexes):
    expected = tutorial_node(seed)
    stored = tutorial_weights(which)
    assert set(stored) == set(expected) == set(SHAPES)
    for name, shape in SHAPES.items():
        assert stored[name].shape == shape and stored[name].dtype == np.float32
        mismatched = [(index, float(stored[name][index]), float(expected[name][index]))
                      for index in np.ndindex(shape) if stored[name][index] != expected[name][index]]
        assert not mismatched, f"{which} {name}: entries (index, stored, generator) differ: {mismatched}"
        # and the hex literal of each entry is the float32 value, entry by entry in row-major order
        assert [float.fromhex(h) for h in hexes[name]] == [float(v) for v in expected[name].ravel()]


def test_the_generator_rewrite_reproduces_a_value_printed_by_tensorflow():
    """A guard on the re-implementation itself: TensorFlow's first draw after set_seed(0), as
    tools/tutorial_draws.py printed it (also the spot check in test_tutorial_exact.py)."""
    assert tutorial_node(0)["W1"][0, 0] == np.float32(1.0684826)
    # another global seed draws other values: the check above is not a constant of the code
    assert tutorial_node(2)["W1"][0, 0] != np.float32(1.0684826)
