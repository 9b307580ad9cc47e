"""The MLP vector field, kept importable here: `harness.model.MLP` is `harness.models.MLP`.

The models now live in `harness.models` (the protocol in `harness.models._protocol`, one module per
model); this module re-exports the MLP and its pieces so that code written against it keeps working.
"""

from .models.mlp import ACTIVATIONS, MLP, Activation, ParameterView

__all__ = ["ACTIVATIONS", "Activation", "MLP", "ParameterView"]
