"""Every script in examples/ runs as a user runs it (a fresh process from the repository's root),
and prints what it promises. New scripts are picked up: each must be listed in docs/examples.md."""

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "examples").glob("*.py"))


def run(name: str, *args: str, timeout: float = 180) -> str:
    path = os.pathsep.join(filter(None, (str(ROOT), os.environ.get("PYTHONPATH"))))  # the repository first
    env = dict(os.environ, PYTHONPATH=path, MPLBACKEND="Agg")
    out = subprocess.run([sys.executable, str(ROOT / "examples" / name), *args], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


def test_every_example_is_listed_in_the_docs():
    page = (ROOT / "docs" / "examples.md").read_text(encoding="utf-8")
    assert EXAMPLES
    for path in EXAMPLES:
        assert f"`examples/{path.name}`" in page, path.name


def test_tutorial_short_trains():
    text = run("tutorial_short.py", "--steps", "30", "--batch", "50")
    first, last = map(float, re.search(r"step 0: (\S+), step 30: (\S+)", text).groups())
    # Adam from a random model: the log-likelihood rises steeply in the first steps (the tutorial's
    # falls from about -300 towards -50 within 50 steps); less than a tenth of that gain is a bug
    assert last > first + 0.1 * abs(first), text


def test_gradient_two_engines_agree_with_the_reference():
    text = run("gradient_two_engines.py", "--batch", "20")
    errors = [float(e) for e in re.findall(r"relative error (\S+) against ForwardSensitivity", text)]
    assert len(errors) == 2
    # engines at rtol = atol = 1e-8 against a reference at 1e-10: the global error of a tolerance-
    # controlled solve is a modest multiple of the tolerance; 100x rtol leaves room for that
    assert max(errors) < 100 * 1e-8, text
    assert "agree within rtol = 1e-6" in text


def test_compare_on_dask(tmp_path):
    pytest.importorskip("distributed", reason='needs the dask extra (pip install -e ".[dask]")')
    text = run("compare_on_dask.py", "--out", str(tmp_path / "out"), "--workers", "2")
    assert "✓ every adjoint is within 100x rtol of the reference (6 of 6 rows" in text, text
    assert "dask: local cluster, 2 worker processes" in text
    assert (tmp_path / "out" / "report.md").is_file() and (tmp_path / "out" / "results.json").is_file()


def test_julia_session():
    from harness.julia import julia_status

    text = run("julia_session.py", timeout=1800)
    status = julia_status()
    if not status.available:
        assert f"Julia is not available here: {status.reason}" in text
        pytest.skip(f"Julia is not available: {status.reason}")
    difference = float(re.search(r"relative difference (\S+)", text).group(1))
    # both at rtol = atol = 1e-8 with DP5, different implementations: they agree to a modest
    # multiple of the tolerance, as the Julia self-test holds them
    assert difference < 100 * 1e-8, text


def test_user_model_is_checked_and_two_engines_agree():
    text = run("user_model.py")
    methods = re.findall(r"^  (vjp\.f|vjp\.z|vjp\.theta|vjp\.per_sample|jac|jac_theta) .* (ok|wrong)$", text, re.M)
    # the checker's six methods (jac and jac_theta by their defaults from vjp), each within its bound
    assert [m for m, _ in methods] == ["vjp.f", "vjp.z", "vjp.theta", "vjp.per_sample", "jac", "jac_theta"], text
    assert all(verdict == "ok" for _, verdict in methods), text
    grads = {engine: (np.array(values.split(), dtype=float), path) for engine, values, path in
             re.findall(r"^(\w+)\s+dL/dθ = \[([^\]]*)\]\s+\((.*)\)$", text, re.M)}
    (gauss, gauss_path), (forward, forward_path) = grads["GaussAdjoint"], grads["ForwardSensitivity"]
    assert (gauss_path, forward_path) == ("numpy (model's vjp)", "numpy (model's jac, jac_theta)"), text
    # both at rtol = atol = 1e-10, an adjoint against forward sensitivities: they differ by a modest
    # multiple of the tolerance; 1e-7 relative leaves 1000x rtol, and the printed 8 digits (rounding
    # at 1e-8 relative) stay well inside it
    assert np.linalg.norm(gauss - forward) <= 1e-7 * np.linalg.norm(forward), text


def test_the_readme_and_models_page_show_the_example_that_runs():
    # the README's own-model snippet is examples/user_model.py after its docstring, verbatim (run above),
    # and the models page's class is the same class
    script = (ROOT / "examples" / "user_model.py").read_text(encoding="utf-8")
    body = script[script.index("import numpy"):]
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(encoding="utf-8"), re.S)
    assert body in blocks
    assert len(body.strip().splitlines()) < 30
    page = re.findall(r"```python\n(.*?)```", (ROOT / "docs" / "models.md").read_text(encoding="utf-8"), re.S)
    assert page and page[0].strip() in script
