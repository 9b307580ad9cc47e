"""Mutation testing: plant one known bug at a time in a copy of the repository and run the tests.

Usage: python benchmarks/mutation_test.py [--only NAME ...] [--jobs N] [--list] [--json PATH]

Each entry of CATALOGUE is (name, file, old text, new text, what it breaks, tests). The old text is a
short snippet that must occur exactly once in the file: if it does not (the code was refactored), the
mutant is reported as "stale", never as caught. A mutant is caught when the tests named by its entry
fail; it survives when they pass. The script prints "N of M planted bugs caught", then the survivors
and the stale entries. It exits 1 if any mutant survives.

The copy is of the tracked files (git ls-files) into a temporary directory, and the tests run there
with that copy first on sys.path, so the installed package is never touched.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Mutation:
    name: str
    file: str
    old: str
    new: str
    breaks: str
    tests: tuple[str, ...]


# The closed-form test first: it takes seconds and catches most gradient bugs, so that `-x` stops early.
GRADIENTS = ("tests/test_closed_form.py", "tests/test_gradients.py")
SOLVERS = ("tests/test_solvers.py",)
MODEL = ("tests/test_model.py",) + GRADIENTS
OPTIMISER = ("tests/test_optimiser.py",)
METRICS = ("tests/test_metrics.py",)

CATALOGUE = [
    # ------------------------------------------------------------------------------- the model
    Mutation("model-bias-gradient-sign", "harness/model.py",
             "np.matmul(g, ones, out=a_theta[b_slice])",
             "np.matmul(-g, ones, out=a_theta[b_slice])",
             "MLP.vjp: dL/db with the wrong sign", MODEL),
    Mutation("model-decay-sign-in-f", "harness/model.py",
             "out -= self.decay[:, None] * z.T",
             "out += self.decay[:, None] * z.T",
             "MLP.f: +Λz instead of -Λz", MODEL),
    Mutation("model-decay-jacobian", "harness/model.py",
             "J[:, np.arange(self.state_dim), np.arange(self.state_dim)] -= self.decay",
             "J[:, np.arange(self.state_dim), np.arange(self.state_dim)] -= 0.5 * self.decay",
             "MLP.jac: half of Λ in ∂f/∂z", MODEL),
    # ------------------------------------------------------------------------- the stage VJPs
    Mutation("stage-vjp-decay-sign", "harness/_stage_vjps.py",
             "out_az -= self._decay * cotangents[-1]",
             "out_az += self._decay * cotangents[-1]",
             "per-stage VJPs: (∂f/∂z)ᵀa with +Λ", GRADIENTS),
    Mutation("stage-vjp-f-decay", "harness/_stage_vjps.py",
             "out -= self._decay * x",
             "out -= 0.5 * self._decay * x",
             "per-stage VJPs: f with half of Λ", GRADIENTS),
    # ---------------------------------------------------------------------------- the solvers
    Mutation("dp-error-estimate-halved", "harness/solvers/_rk_step.py",
             "return cls(c.A, c.B, c.C, c.E, c.P, c.order, c.error_estimator_order)",
             "return cls(c.A, c.B, c.C, 0.5 * c.E, c.P, c.order, c.error_estimator_order)",
             "explicit RK: error estimate halved (steps too long for the tolerance)", SOLVERS),
    Mutation("dp-weight-perturbed", "harness/solvers/_rk_step.py",
             "return cls(c.A, c.B, c.C, c.E, c.P, c.order, c.error_estimator_order)",
             "return cls(c.A, c.B * (1 + 1e-4), c.C, c.E, c.P, c.order, c.error_estimator_order)",
             "explicit RK: solution weights b perturbed by 1e-4 (first order)", SOLVERS),
    Mutation("step-control-safety", "harness/solvers/_explicit_rk.py",
             "if error_norm < 1.0:",
             "if error_norm < 4.0:",
             "explicit RK: steps with 4x the allowed error accepted", SOLVERS),
    # ---------------------------------------------------------------------------- the adjoints
    Mutation("quadrature-two-gauss-nodes", "harness/sensitivity/algorithms.py",
             "quadrature_nodes: int = 3",
             "quadrature_nodes: int = 2",
             "QuadratureAdjoint: 2 Gauss nodes instead of 3 (order too low)", GRADIENTS),
    Mutation("quadrature-one-gauss-node", "harness/sensitivity/algorithms.py",
             "quadrature_nodes: int = 3",
             "quadrature_nodes: int = 1",
             "QuadratureAdjoint: midpoint rule", GRADIENTS),
    Mutation("interpolating-jump-dropped", "harness/sensitivity/_interpolating.py",
             "y[: self.bn] += flat(dL_dz_k)",
             "y[: self.bn] += 0.0 * flat(dL_dz_k)",
             "InterpolatingAdjoint: no jump of a at observation times", GRADIENTS),
    Mutation("backsolve-jump-dropped", "harness/sensitivity/_backsolve.py",
             "y[bn : 2 * bn] += flat(dL_dz_k)",
             "y[bn : 2 * bn] += 0.0 * flat(dL_dz_k)",
             "BacksolveAdjoint: no jump of a at observation times", GRADIENTS),
    Mutation("quadrature-jump-dropped", "harness/sensitivity/_quadrature.py",
             "return a + flat(dL_dz_k)",
             "return a + 0.0 * flat(dL_dz_k)",
             "QuadratureAdjoint: no jump of a at observation times", GRADIENTS),
    Mutation("gauss-one-node", "harness/sensitivity/_gauss.py",
             "return max(1, (order + 1) // 2)",
             "return 1",
             "GaussAdjoint: one Gauss node per backward step whatever the solver's order", GRADIENTS),
    Mutation("gauss-half-step-weight", "harness/sensitivity/_gauss.py",
             "self.add_quadrature(t_nodes, local(t_nodes) * (half * self._w_gl)[:, None])",
             "self.add_quadrature(t_nodes, local(t_nodes) * (0.5 * half * self._w_gl)[:, None])",
             "GaussAdjoint: each step's quadrature weighted by half its length", GRADIENTS),
    Mutation("dto-stage-cotangent-dropped", "harness/sensitivity/_discrete.py",
             "k_bar[j] += (h * A[i, j]) * Y_bar",
             "k_bar[j] += 0.0 * (h * A[i, j]) * Y_bar",
             "RecursiveCheckpointAdjoint: later stages' cotangents not passed back to earlier stages",
             ("tests/test_discrete_adjoint.py",) + GRADIENTS),
    # --------------------------------------------------------------------------- the references
    Mutation("forward-sensitivity-transposed-jacobian", "harness/sensitivity/_forward_sensitivity.py",
             'd_theta = np.einsum("bij,bjp->bip", J, s_theta)',
             'd_theta = np.einsum("bji,bjp->bip", J, s_theta)',
             "ForwardSensitivity: ∂f/∂z transposed in the sensitivity equations", GRADIENTS),
    Mutation("forward-sensitivity-transposed-jacobian-z0", "harness/sensitivity/_forward_sensitivity.py",
             'd_z0 = np.einsum("bij,bjk->bik", J, s_z0)',
             'd_z0 = np.einsum("bji,bjk->bik", J, s_z0)',
             "ForwardSensitivity: ∂f/∂z transposed in the z0 sensitivities", GRADIENTS),
    Mutation("finite-differences-stencil-z0", "harness/sensitivity/_finite_differences.py",
             "dz0[:, i] /= 12 * h",
             "dz0[:, i] /= 12.5 * h",
             "FiniteDifferences: dL/dz0 scaled by 0.96", GRADIENTS),
    Mutation("finite-differences-stencil", "harness/sensitivity/_finite_differences.py",
             "dtheta[p] /= 12 * h",
             "dtheta[p] /= 12.5 * h",
             "FiniteDifferences: dL/dθ scaled by 0.96", GRADIENTS),
    # -------------------------------------------------------------------------------- the loss
    Mutation("loss-residual-sign", "harness/problems/_problem.py",
             "residual = z_at_times[..., : self.observed_dim] - self.data",
             "residual = self.data - z_at_times[..., : self.observed_dim]",
             "Problem.loss_terms: ∂L/∂z with the wrong sign", GRADIENTS),
    # --------------------------------------------------------------------------- the optimiser
    Mutation("adam-no-m-correction", "harness/training.py",
             "m_hat = self.m / (1 - self.beta1**self.t)",
             "m_hat = self.m",
             "Adam: no bias correction of m̂", OPTIMISER),
    Mutation("adam-no-corrections", "harness/training.py",
             "m_hat = self.m / (1 - self.beta1**self.t)\n        v_hat = self.v / (1 - self.beta2**self.t)",
             "m_hat = self.m\n        v_hat = self.v",
             "Adam: neither m̂ nor v̂ bias-corrected", OPTIMISER),
    Mutation("adam-no-sqrt-lr-0.3", "harness/training.py",
             "return theta - self.lr * m_hat / (np.sqrt(v_hat) + self.eps)",
             "return theta - 0.3 * self.lr * m_hat / (v_hat + self.eps)",
             "Adam: no square root on v̂, learning rate x0.3", OPTIMISER),
    Mutation("adam-eps-inside-root", "harness/training.py",
             "return theta - self.lr * m_hat / (np.sqrt(v_hat) + self.eps)",
             "return theta - self.lr * m_hat / np.sqrt(v_hat + self.eps)",
             "Adam: ε under the square root", OPTIMISER),
    Mutation("checkpoint-loses-second-moment", "harness/training.py",
             "theta=state.theta, m=m, v=v,",
             "theta=state.theta, m=m, v=0.5 * v,",
             "training checkpoint: Adam's v̂ halved on resume", ("tests/test_cli.py", "-k", "resume")),
    # ----------------------------------------------------------------------------- the metrics
    Mutation("relative-error-halved", "harness/_metrics.py",
             "scale = np.linalg.norm(r)\n",
             "scale = np.linalg.norm(r) + np.linalg.norm(g)\n",
             "relative_error divided by ‖r‖ + ‖g‖", METRICS),
    Mutation("worst-entry-argmin", "harness/_metrics.py",
             "i = int(np.argmax(diff))",
             "i = int(np.argmin(diff))",
             "worst_entry reports the best entry", METRICS),
    Mutation("cosine-unnormalised", "harness/_metrics.py",
             "denominator = np.linalg.norm(g) * np.linalg.norm(r)",
             "denominator = np.linalg.norm(r) ** 2",
             "cosine_similarity normalised by ‖r‖² only", METRICS),
    # ------------------------------------------------------------------------ the agreement checks
    Mutation("assert-gradients-agree-bound-x1000", "harness/testing.py",
             "bound = atol + rtol * scale",
             "bound = 1000 * (atol + rtol * scale)",
             "assert_gradients_agree's bound x1000", METRICS + ("tests/test_testing.py",)),
    Mutation("gradcheck-bound-x1e6", "harness/gradcheck.py",
             "    return GROWTH * tol\n",
             "    return 1e6 * GROWTH * tol\n",
             "gradcheck's bound x1e6", METRICS + ("tests/test_cli.py",)),
    Mutation("gradcheck-status-comparison", "harness/gradcheck.py",
             '"ok" if rel <= bound else "beyond bound"',
             '"ok" if rel <= 10 * bound else "beyond bound"',
             "gradcheck's status compares against 10x its bound", METRICS),
    Mutation("report-agreement-factor-x1000", "harness/compare/_gradient.py",
             "AGREEMENT_FACTOR = 100.0",
             "AGREEMENT_FACTOR = 100000.0",
             "the comparison report's 'agrees' claim 1000x looser", METRICS),
]


def copy_repo(dest: Path) -> None:
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    for name in files.decode().split("\0"):
        if not name:
            continue
        source = ROOT / name
        if source.is_file():
            target = dest / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)


def run_mutation(mutation: Mutation, workdir: Path, timeout: float) -> dict:
    """Apply `mutation` to a fresh copy under `workdir`, run its tests, report the outcome."""
    result = {**asdict(mutation), "status": None, "seconds": None, "detail": ""}
    text = (ROOT / mutation.file).read_text() if (ROOT / mutation.file).exists() else ""
    count = text.count(mutation.old)
    if count != 1:
        result["status"] = "stale"
        result["detail"] = f"snippet found {count} times in {mutation.file} (expected once)"
        return result
    copy = Path(tempfile.mkdtemp(prefix=f"{mutation.name}-", dir=workdir))
    copy_repo(copy)
    (copy / mutation.file).write_text(text.replace(mutation.old, mutation.new))
    env = {**os.environ, "PYTHONPATH": str(copy), "MPLBACKEND": "Agg", "PYTHONDONTWRITEBYTECODE": "1"}
    command = [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", "-o", "addopts=",
               *mutation.tests]
    start = time.perf_counter()
    try:
        proc = subprocess.run(command, cwd=copy, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        result.update(status="caught", detail=f"tests timed out after {timeout:g} s", seconds=timeout)
        return result
    finally:
        result["seconds"] = time.perf_counter() - start
    lines = [line for line in proc.stdout.splitlines() if line.startswith(("FAILED", "ERROR"))]
    if proc.returncode == 0:
        result["status"] = "survived"
    elif proc.returncode == 1:
        result["status"] = "caught"
        result["detail"] = lines[0] if lines else ""
    else:  # collection error, usage error: the mutant broke the import, which also counts as caught
        result["status"] = "caught"
        result["detail"] = f"pytest exit {proc.returncode}: " + (lines[0] if lines else proc.stdout[-300:])
    shutil.rmtree(copy, ignore_errors=True)
    return result


def check_copy_imports_itself(workdir: Path) -> None:
    """The tests in the copy must import the copy's harness, not the installed one."""
    copy = Path(tempfile.mkdtemp(prefix="probe-", dir=workdir))
    copy_repo(copy)
    env = {**os.environ, "PYTHONPATH": str(copy)}
    out = subprocess.run([sys.executable, "-c", "import harness; print(harness.__file__)"], cwd=copy,
                         env=env, capture_output=True, text=True, check=True).stdout.strip()
    shutil.rmtree(copy, ignore_errors=True)
    if not Path(out).resolve().is_relative_to(copy.resolve()):
        sys.exit(f"the copy imports harness from {out}, not from the copy: results would be meaningless")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", metavar="NAME", help="run only these mutations")
    parser.add_argument("--jobs", type=int, default=1, help="mutants run at once (default 1)")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds per mutant's tests")
    parser.add_argument("--list", action="store_true", help="list the catalogue and exit")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    args = parser.parse_args(argv)
    chosen = [m for m in CATALOGUE if not args.only or m.name in args.only]
    if args.only and len(chosen) != len(set(args.only)):
        known = {m.name for m in CATALOGUE}
        parser.error(f"unknown mutation(s) {sorted(set(args.only) - known)}: expected names from --list")
    if args.list:
        for m in chosen:
            print(f"{m.name:42s} {m.file:45s} {m.breaks}")
        return 0
    with tempfile.TemporaryDirectory(prefix="mutation-") as tmp:
        workdir = Path(tmp)
        check_copy_imports_itself(workdir)
        with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
            results = []
            for result in pool.map(lambda m: run_mutation(m, workdir, args.timeout), chosen):
                results.append(result)
                seconds = "" if result["seconds"] is None else f"{result['seconds']:6.1f} s"
                print(f"{result['status']:8s} {seconds:>8s}  {result['name']}: {result['breaks']}"
                      + (f"  [{result['detail']}]" if result["detail"] else ""), flush=True)
    live = [r for r in results if r["status"] != "stale"]
    caught = [r for r in live if r["status"] == "caught"]
    print(f"\n{len(caught)} of {len(live)} planted bugs caught")
    for r in live:
        if r["status"] == "survived":
            print(f"  survived: {r['name']} ({r['file']}): {r['breaks']}")
    for r in results:
        if r["status"] == "stale":
            print(f"  stale: {r['name']}: {r['detail']}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0 if len(caught) == len(live) else 1


if __name__ == "__main__":
    sys.exit(main())
