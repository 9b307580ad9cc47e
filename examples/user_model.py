"""Your own model in under 30 lines: a class with f and vjp, checked, then one gradient by two engines.

The same code as the README's "In Python" section (tests/test_examples.py runs this file).
Run: python examples/user_model.py
"""
import numpy as np
import harness
from harness.models import VectorField
from harness.problems import Problem


class Decay(VectorField):
    """dz/dt = -k z + c for each row z (N = 1), θ = (k, c)."""

    state_dim, n_params = 1, 2

    def f(self, t, z, theta):
        return -theta[0] * z + theta[1]

    def vjp(self, t, z, theta, a, per_sample=False):
        rows = np.stack((-(z * a).sum(1), a.sum(1)), axis=1)  # row b: (∂f_b/∂θ)ᵀ a_b
        return self.f(t, z, theta), -theta[0] * a, rows if per_sample else rows.sum(0)


model = Decay()
print(harness.check_model(model, theta=[0.5, 1.0]).format())  # every derivative against differences of f
rng = np.random.default_rng(0)
problem = Problem(model, np.array([0.5, 1.0]), rng.normal(size=(10, 1)), 0.0, np.array([1.0, 2.0]),
                  rng.normal(size=(2, 10, 1)))
for engine in ("GaussAdjoint", "ForwardSensitivity"):
    result = harness.gradient(problem, engine=engine, rtol=1e-10, atol=1e-10)
    print(f"{engine:18s} dL/dθ = {result.dtheta}  ({result.path})")
