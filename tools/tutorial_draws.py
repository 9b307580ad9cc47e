"""Draw the tutorial's weights with TensorFlow and check them against harness/problems/_tutorial_draws.py.

The tutorial draws its two models with TensorFlow's generator, so its published table can only be
reproduced with those exact float32 values. This script runs the tutorial's model construction (the
`NODE` constructor: four `tf.random.normal` draws, in the constructor's order, after
`np.random.seed(s); tf.random.set_seed(s)`) and compares every value, bit for bit, with the constants
the harness ships. It needs TensorFlow (the harness does not):

    python -m venv tf-env && tf-env/bin/pip install tensorflow-cpu
    tf-env/bin/python tools/tutorial_draws.py           # check; exit status 1 on any difference
    tf-env/bin/python tools/tutorial_draws.py --emit    # print the constants as Python source

The constants module is loaded from its file, so the harness need not be installed beside TensorFlow.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

import numpy as np

CONSTANTS = Path(__file__).resolve().parents[1] / "harness" / "problems" / "_tutorial_draws.py"
HIDDEN_SIZE, STATE_SIZE = 3, 2
NAMES = ("W1", "b1", "W2", "b2")


def draw_node(tf) -> dict[str, np.ndarray]:
    """The draws of the tutorial's `NODE(hidden_size=3, state_size=2, dtype=tf.float32)` constructor."""
    dtype = tf.float32
    # its four draws, in its order, with its shapes, means and standard deviations
    w1 = tf.random.normal(shape=(STATE_SIZE, HIDDEN_SIZE), mean=0., stddev=STATE_SIZE**-0.5, dtype=dtype)
    b1 = tf.random.normal(shape=(1, HIDDEN_SIZE), mean=0., stddev=1., dtype=dtype)
    w2 = tf.random.normal(shape=(HIDDEN_SIZE, STATE_SIZE), mean=0, stddev=HIDDEN_SIZE**-0.5, dtype=dtype)
    b2 = tf.random.normal(shape=(1, STATE_SIZE), mean=0., stddev=1., dtype=dtype)
    # it wraps each draw in a tf.Variable; read the values back the same way
    return {name: tf.Variable(value).numpy() for name, value in zip(NAMES, (w1, b1, w2, b2))}


def node_weights(tf, seed: int) -> dict[str, np.ndarray]:
    """The tutorial's `np.random.seed(seed); tf.random.set_seed(seed)` and then a new `NODE`."""
    np.random.seed(seed)
    tf.random.set_seed(seed)
    return draw_node(tf)


def numpy_untouched(tf) -> bool:
    """Whether drawing the ground truth leaves numpy's legacy generator where seed 0 put it.

    If it does, the tutorial's z0 (drawn with numpy right after the ground truth) is numpy's first
    1000 uniforms after seed 0, which the harness draws without TensorFlow.
    """
    np.random.seed(0)
    tf.random.set_seed(0)
    before = np.random.get_state()
    draw_node(tf)
    after = np.random.get_state()
    return bool(np.array_equal(before[1], after[1]) and before[2] == after[2])


def float32_hex(x) -> str:
    """The exact value of a float32 as a hex literal for float.fromhex, without trailing zeros."""
    mantissa, exponent = float(x).hex().split("p")
    return f"{mantissa.rstrip('0').rstrip('.')}p{exponent}"


def load_constants():
    spec = importlib.util.spec_from_file_location("_tutorial_draws", CONSTANTS)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def emit(draws: dict[str, dict[str, np.ndarray]]) -> str:
    """The two dictionaries of the constants module, as Python source (exact float32 values as hex)."""
    lines = []
    for label, weights in draws.items():
        lines.append(f"{label} = {{")
        for name in NAMES:
            values = ", ".join(f'"{float32_hex(x)}"' for x in weights[name].ravel())
            lines.append(f'    "{name}": ({values}),')
        lines.append("}")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--emit", action="store_true", help="print the draws as Python source")
    args = parser.parse_args(argv)
    try:
        import tensorflow as tf
    except ImportError:
        print("TensorFlow is not installed: pip install tensorflow-cpu", file=sys.stderr)
        return 2
    draws = {"GROUND_TRUTH_HEX": node_weights(tf, 0), "LEARNT_INIT_HEX": node_weights(tf, 1)}
    if args.emit:
        print(f'TENSORFLOW_VERSION = "{tf.__version__}"')
        print(emit(draws))
        return 0
    constants = load_constants()
    print(f"TensorFlow {tf.__version__} (constants drawn with {constants.TENSORFLOW_VERSION}), numpy {np.__version__}")
    mismatches = 0
    for label, which in (("GROUND_TRUTH_HEX", "ground_truth"), ("LEARNT_INIT_HEX", "learnt_init")):
        stored = constants.tutorial_weights(which)
        for name in NAMES:
            drawn = draws[label][name]
            same = stored[name].dtype == np.float32 and stored[name].shape == drawn.shape and bool(
                np.array_equal(stored[name].view(np.uint32), drawn.view(np.uint32)))
            mismatches += not same
            shown = np.array2string(drawn.ravel(), precision=8, separator=", ", max_line_width=200)
            print(f"{which:>12} {name} {str(drawn.shape):7} {'identical' if same else 'DIFFERENT'}  {shown}")
    untouched = numpy_untouched(tf)
    print(f"numpy's generator untouched by the TensorFlow draws: {untouched}")
    total = sum(w.size for w in draws["GROUND_TRUTH_HEX"].values()) * 2
    verdict = ("all identical to the stored constants" if not mismatches
               else f"{mismatches} of {2 * len(NAMES)} arrays differ")
    print(f"{total} values in {2 * len(NAMES)} arrays: {verdict}")
    return 0 if mismatches == 0 and untouched else 1


if __name__ == "__main__":
    sys.exit(main())
