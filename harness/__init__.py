"""harness: Neural ODEs trained with adjoint-sensitivity gradients, cross-checked across engines.

The public surface: build or load a problem, compute a gradient with a chosen engine, train.
Every engine is here (`GaussAdjoint`, `RecursiveCheckpointAdjoint` included), with what a new engine
is built from: `SolveOptions` (what an engine's `compute` receives), `register_engine`,
`resolve_engine` (a name such as "QuadratureAdjoint" or "julia:GaussAdjoint" to an engine), and for a
new continuous adjoint its backward system, `AdjointSystem`, driven by `adjoint_gradient`.

Inside, from the bottom up: `solvers` (forward solves; `solvers._step_rules` the step rules both loops
use), `model` and `_stage_vjps` (the vector field and its per-stage VJPs), `_compiled` (numba kernels
that take and return arrays), `_forward` and `_state_layout`, `problems`, `sensitivity` (the engines;
`_compiled_loop` is their glue to the kernels), `_backends` (Julia and peer engines by name), then
`training`, `testing`, `compare`, `julia`, `peers` and `cli`. tests/test_import_graph.py keeps the
imports in that direction.
"""

__version__ = "0.1.0"

# The names below are imported on first use (PEP 562), not here: `harness` on the command line
# then starts its signal handling before numpy and scipy load, so that Ctrl-C during start-up ends
# with one line instead of a traceback, and `import harness` stays cheap.
_LAZY = {
    "HarnessInputError": ".errors", "SolverError": ".errors", "UnstableBacksolveError": ".errors",
    "MLP": ".model",
    "Problem": ".problems", "load_problem": ".problems", "save_problem": ".problems",
    "build_problem": ".problems", "deep_problem": ".problems", "multi_time_problem": ".problems",
    "seed_problem": ".problems", "stiff_problem": ".problems",
    "BacksolveAdjoint": ".sensitivity", "FiniteDifferences": ".sensitivity",
    "ForwardSensitivity": ".sensitivity", "GradientResult": ".sensitivity",
    "InterpolatingAdjoint": ".sensitivity", "QuadratureAdjoint": ".sensitivity", "gradient": ".sensitivity",
    "GaussAdjoint": ".sensitivity", "RecursiveCheckpointAdjoint": ".sensitivity",
    "register_engine": ".sensitivity", "resolve_engine": ".sensitivity", "ENGINES": ".sensitivity",
    "SolveOptions": ".sensitivity", "AdjointSystem": ".sensitivity", "adjoint_gradient": ".sensitivity",
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
    "BacksolveAdjoint", "InterpolatingAdjoint", "QuadratureAdjoint", "GaussAdjoint", "RecursiveCheckpointAdjoint",
    "ForwardSensitivity", "FiniteDifferences", "register_engine", "resolve_engine", "ENGINES", "SolveOptions",
    "AdjointSystem", "adjoint_gradient",
]
