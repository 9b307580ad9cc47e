"""harness: Neural ODEs trained with adjoint-sensitivity gradients, cross-checked across engines.

The public surface: build or load a problem, compute a gradient with a chosen engine, train.
"""

__version__ = "0.1.0"

from .errors import HarnessInputError, SolverError, UnstableBacksolveError  # noqa: E402
from .model import MLP  # noqa: E402
from .problems import Problem  # noqa: E402
from .problems import load_problem, save_problem  # noqa: E402
from .problems import build_problem, deep_problem, multi_time_problem, seed_problem, stiff_problem  # noqa: E402
from .sensitivity import (  # noqa: E402
    BacksolveAdjoint,
    FiniteDifferences,
    ForwardSensitivity,
    GradientResult,
    InterpolatingAdjoint,
    QuadratureAdjoint,
    gradient,
    register_engine,
)
from .training import train  # noqa: E402

__all__ = [
    "MLP", "Problem", "HarnessInputError", "SolverError", "UnstableBacksolveError",
    "load_problem", "save_problem", "build_problem", "seed_problem", "stiff_problem",
    "multi_time_problem", "deep_problem", "gradient", "GradientResult", "train",
    "BacksolveAdjoint", "InterpolatingAdjoint", "QuadratureAdjoint", "ForwardSensitivity",
    "FiniteDifferences", "register_engine",
]
