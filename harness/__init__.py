"""harness: Neural ODEs trained with adjoint-sensitivity gradients, cross-checked across engines.

The public surface: build or load a problem, compute a gradient with a chosen engine, train.
"""

__version__ = "0.1.0"

# The names below are imported on first use (PEP 562), not here: `harness` on the command line
# then starts its signal handling before numpy and scipy load, so that Ctrl-C during start-up ends
# with one line instead of a traceback, and `import harness` stays cheap.
_LAZY = {
    "HarnessInputError": ".errors", "SolverError": ".errors", "UnstableBacksolveError": ".errors",
    "MLP": ".model",
    # the model protocol and checker (harness.models); reachable here, listed in __all__ once docs/api.md has them
    "VectorField": ".models", "check_model": ".models", "build_model": ".models", "LotkaVolterra": ".models",
    "Problem": ".problems", "load_problem": ".problems", "save_problem": ".problems",
    "build_problem": ".problems", "deep_problem": ".problems", "multi_time_problem": ".problems",
    "seed_problem": ".problems", "stiff_problem": ".problems",
    "BacksolveAdjoint": ".sensitivity", "FiniteDifferences": ".sensitivity",
    "ForwardSensitivity": ".sensitivity", "GradientResult": ".sensitivity",
    "InterpolatingAdjoint": ".sensitivity", "QuadratureAdjoint": ".sensitivity", "gradient": ".sensitivity",
    "register_engine": ".sensitivity", "ENGINES": ".sensitivity",
    "train": ".training",
}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'harness' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "MLP", "Problem", "HarnessInputError", "SolverError", "UnstableBacksolveError",
    "load_problem", "save_problem", "build_problem", "seed_problem", "stiff_problem",
    "multi_time_problem", "deep_problem", "gradient", "GradientResult", "train",
    "BacksolveAdjoint", "InterpolatingAdjoint", "QuadratureAdjoint", "ForwardSensitivity",
    "FiniteDifferences", "register_engine",
]
