"""Models: the vector fields the harness solves and differentiates, and the protocol they follow.

- `VectorField` (`_protocol.py`): the documented protocol, with defaults for the optional slots;
- `MLP` (`mlp.py`): the Neural ODE's network, the one model with a compiled fast path;
- `LotkaVolterra`, `PredatorPreyGrowth` (`lotka_volterra.py`): parametric predator-prey dynamics;
- `UniversalODE`, `predator_prey_ude` (`ude.py`): known physics plus an MLP term;
- `Linear` (`linear.py`): f = A z + c, the closed-form case;
- `check_model` (`_check.py`): each derivative against finite differences or complex step;
- `build_model("module:callable", parameters)`: a model named in a file, by import only.
"""

from __future__ import annotations

import importlib
import re

from ..errors import HarnessInputError
from ._protocol import ParameterView, VectorField, check_protocol, entry_names, missing_slots, require
from .linear import Linear
from .lotka_volterra import LotkaVolterra, PredatorPreyGrowth
from .mlp import ACTIVATIONS, MLP
from .ude import UniversalODE, predator_prey_ude


# a dotted module path, a colon, a dotted attribute path: nothing else (the name is imported, never run)
_DOTTED = r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*"
_NAME = re.compile(f"^{_DOTTED}:{_DOTTED}$")
_PLAIN = (str, int, float, bool, type(None))


def _check_plain(value, where: str):
    if isinstance(value, _PLAIN):
        return
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _check_plain(item, f"{where}[{i}]")
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise HarnessInputError(f"model parameter {where}: key {key!r} is not a string")
            _check_plain(item, f"{where}.{key}")
        return
    raise HarnessInputError(
        f"model parameter {where} = {value!r}: expected plain values (numbers, strings, booleans, lists, tables)"
    )


def model_factory(function):
    """Mark a function as one that builds a model, so that files may name it (`build_model`).

    A file names a model by "module:callable"; only a model class (one with `f` and `vjp`) or a
    function marked with this decorator is called, so that a file cannot call an arbitrary function
    (`os:system`) with its parameters.
    """
    function.__harness_model_factory__ = True
    return function


def _is_model_callable(target) -> bool:
    if isinstance(target, type):
        return callable(getattr(target, "f", None)) and callable(getattr(target, "vjp", None))
    return bool(getattr(target, "__harness_model_factory__", False))


def resolve_callable(name: str):
    """The model class or marked factory `module:callable` names, found by import and attribute
    lookup only; anything else is refused before it is called."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise HarnessInputError(
            f"model {name!r}: expected an importable 'module:callable', e.g. 'harness.models:LotkaVolterra'"
        )
    module_name, attribute = name.split(":")
    try:
        target = importlib.import_module(module_name)
    except ImportError as err:
        raise HarnessInputError(f"model {name!r}: module {module_name!r} cannot be imported ({err})") from None
    for part in attribute.split("."):
        if not hasattr(target, part):
            raise HarnessInputError(f"model {name!r}: module {module_name!r} has no {attribute!r}")
        target = getattr(target, part)
    if not _is_model_callable(target):
        raise HarnessInputError(
            f"model {name!r}: {attribute!r} is neither a model class (with f and vjp) nor a function marked "
            "with @harness.models.model_factory"
        )
    return target


def build_model(name: str, parameters: dict | None = None):
    """The model `module:callable(**parameters)`, checked to follow the protocol.

    Parameters
    ----------
    name : str
        "module:callable", e.g. "harness.models:LotkaVolterra" or "my_package.models:make_field".
    parameters : dict, optional
        Plain keyword arguments (numbers, strings, booleans, lists, tables).

    Raises
    ------
    HarnessInputError
        One line: the name is malformed or cannot be imported, a parameter is not plain, the call
        fails, or what it returns is not a model.
    """
    parameters = {} if parameters is None else parameters
    if not isinstance(parameters, dict):
        raise HarnessInputError(f"model parameters {parameters!r}: expected a table of keyword arguments")
    _check_plain(parameters, "")
    factory = resolve_callable(name)
    try:
        model = factory(**parameters)
    except HarnessInputError as err:
        raise HarnessInputError(f"model {name!r}: {err}") from None
    except (TypeError, ValueError) as err:
        raise HarnessInputError(f"model {name!r} with {parameters}: {err}") from None
    check_protocol(model)
    return model


def model_spec(model) -> tuple[str, dict]:
    """("module:callable", parameters) that rebuild `model`, from its `spec()`; one line if it has none."""
    spec = getattr(model, "spec", None)
    if spec is None:
        raise HarnessInputError(
            f"{model!r} has no spec(): a model written to a file must say how to rebuild it "
            "('module:callable', plain parameters)"
        )
    name, parameters = spec()
    return name, dict(parameters)


def check_model(model, *args, **kwargs):
    """See `harness.models._check.check_model`."""
    from ._check import check_model as check

    return check(model, *args, **kwargs)


__all__ = [
    "ACTIVATIONS", "Linear", "LotkaVolterra", "MLP", "ParameterView", "PredatorPreyGrowth", "UniversalODE",
    "VectorField", "build_model", "check_model", "check_protocol", "entry_names", "missing_slots",
    "model_factory", "model_spec", "predator_prey_ude", "require", "resolve_callable",
]
