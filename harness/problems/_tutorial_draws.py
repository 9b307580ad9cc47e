"""The tutorial's weights exactly as TensorFlow drew them: 34 float32 values, with their provenance.

The tutorial draws both of its models with TensorFlow's generator, in float32:

    np.random.seed(0); tf.random.set_seed(0)
    node_ground_truth = NODE(hidden_size=3, state_size=2, dtype=tf.float32)
    z0 = 20 * (np.random.uniform(size=1000) - 0.5)
    ...
    np.random.seed(1); tf.random.set_seed(1)
    node_learnt = NODE(hidden_size=3, state_size=2, dtype=tf.float32)

where the `NODE` constructor draws, by `tf.random.normal` in this order, W1 (2, 3) with standard
deviation 2^-1/2, b1 (1, 3) with 1, W2 (3, 2) with 3^-1/2 and b2 (1, 2) with 1, all with mean 0. Its
vector field takes row vectors: f(z) = tanh(z W1 + b1) W2 + b2.

The values below were drawn by running exactly that construction with tensorflow-cpu 2.21.0
(numpy 2.4.6, Python 3.11) through `tools/tutorial_draws.py`, which regenerates them and checks them
against this file bit for bit wherever TensorFlow is installed. The same script checks that the draws
leave numpy's legacy generator untouched, so the tutorial's z0 is numpy's first 1000 uniforms after
`np.random.seed(0)` and needs no constant here. The harness itself never imports TensorFlow.

Each value is stored as the hex literal of its exact float32 value (`float.fromhex`), so nothing is
lost to decimal rounding; `tutorial_weights` returns them as float32 arrays in the tutorial's shapes.
"""

from __future__ import annotations

import numpy as np

TENSORFLOW_VERSION = "2.21.0"
SHAPES = {"W1": (2, 3), "b1": (1, 3), "W2": (3, 2), "b2": (1, 2)}

# np.random.seed(0); tf.random.set_seed(0); NODE(...): the ground truth that makes the data.
# np.random.seed(1); tf.random.set_seed(1); NODE(...): the model the tutorial trains, before training.
GROUND_TRUTH_HEX = {
    "W1": ("0x1.118814p+0", "0x1.323a7p-2", "-0x1.2fe43ep-2", "-0x1.7715e6p-1", "-0x1.bfc78ep-1", "0x1.548398p-2"),
    "b1": ("0x1.111f1p+0", "0x1.8e6fdcp-3", "-0x1.0fc8dp-1"),
    "W2": ("-0x1.0aa73ap+0", "-0x1.07c284p-4", "-0x1.f3e538p-2", "0x1.f5e962p-2", "0x1.21661p-4", "0x1.8aa4fap-1"),
    "b2": ("0x1.b2f028p+0", "-0x1.8be37ap-1"),
}
LEARNT_INIT_HEX = {
    "W1": ("-0x1.8eaf2ep-1", "0x1.17cf9ap+0", "0x1.15c9b6p-2", "-0x1.3e785cp-1", "-0x1.bb60f2p-1", "-0x1.63342cp-1"),
    "b1": ("0x1.9cc312p-2", "-0x1.168888p+0", "-0x1.027046p-4"),
    "W2": ("-0x1.0e304ep-2", "-0x1.e115d4p-3", "0x1.aebd72p-2", "-0x1.07f79ap-1", "0x1.71a2cep-3", "0x1.25ea8ap-1"),
    "b2": ("0x1.b1ab14p+0", "0x1.ea4362p-4"),
}

_DRAWS = {"ground_truth": GROUND_TRUTH_HEX, "learnt_init": LEARNT_INIT_HEX}


def tutorial_weights(which: str) -> dict[str, np.ndarray]:
    """The weights of one of the tutorial's models, as TensorFlow drew them.

    Parameters
    ----------
    which : {"ground_truth", "learnt_init"}

    Returns
    -------
    dict of float32 arrays
        W1 (2, 3), b1 (1, 3), W2 (3, 2), b2 (1, 2), in the tutorial's row-vector layout.
    """
    hexes = _DRAWS[which]
    return {
        name: np.array([float.fromhex(h) for h in hexes[name]], dtype=np.float32).reshape(shape)
        for name, shape in SHAPES.items()
    }
