"""The Julia backend's Python logic, tested without Julia: whitelist, option mapping, layout,
result unpacking, callbacks, environment status, doctor and setup messages."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from harness.errors import HarnessInputError, SolverError
from harness import SolveOptions
from harness.julia import JuliaAdjoint, JuliaForwardSensitivity, doctor_report, julia_engines, julia_status
from harness.julia import environment, install, layout, names, results
from harness.julia.callbacks import PythonDynamics
from harness.julia.engines import resolve_settings
from harness.model import MLP
from harness._state_layout import flat

ROOT = Path(__file__).resolve().parent.parent
GLUE = (ROOT / "harness" / "julia" / "HarnessJL.jl").read_text()


# ----------------------------------------------------------------------------- environment files
def test_the_repository_has_one_juliapkg_json_inside_the_package():
    # juliapkg scans every sys.path entry and its immediate subfolders: a second file (the old
    # julia_env/juliapkg.json) is seen from the repository root and not from a console script,
    # and every switch between them re-resolves the Julia environment.
    found = sorted(str(p.relative_to(ROOT)) for p in ROOT.rglob("juliapkg.json")
                   if not any(part.startswith(".") or part == "reports" for part in p.relative_to(ROOT).parts))
    assert found == ["harness/juliapkg.json"]
    assert environment.JULIAPKG_JSON == ROOT / "harness" / "juliapkg.json"


def test_juliapkg_json_declares_every_package_the_glue_uses():
    spec = json.loads((ROOT / "harness" / "juliapkg.json").read_text())
    packages = spec["packages"]
    used = set(re.findall(r"^using (\w+):", GLUE, flags=re.M))
    assert used <= set(packages), used - set(packages)
    for name, entry in packages.items():
        assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", entry["uuid"]), name
        assert entry["version"], f"{name} has no compat bound"
    # vjp/vjp_p on ODEFunction: SciMLSensitivity 7.97; SciMLBase 3 only from 7.107.
    assert packages["SciMLSensitivity"]["version"] == "7.107"
    # The Julia versions that Enzyme (a hard dependency of SciMLSensitivity) is tested on, and on which
    # upstream tests Zygote over `solve` (the native ReverseDiffAdjoint): 1.10 and 1.11, not 1.12.
    assert spec["julia"] == "~1.10.3, ~1.11"


def test_every_whitelisted_solver_has_a_julia_constructor():
    julia_names = set(re.findall(r'^\s+"([^"]+)" => \w+ -> ', GLUE, flags=re.M))
    assert julia_names == set(names.JULIA_SOLVERS)
    for sensealg in names.ADJOINT_SENSEALGS:
        assert GLUE.count(f'name == "{sensealg}"') == 2  # native and Python routes


def test_package_data_ships_the_glue():
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert 'harness = ["juliapkg.json", "julia/*.jl"]' in pyproject


# ----------------------------------------------------------------------------- whitelist
def test_unknown_solver_lists_valid_names():
    with pytest.raises(HarnessInputError, match=r"unknown Julia solver 'Tsit6'.*'Rodas5P'.*'Tsit5'"):
        names.check_julia_solver("Tsit6")
    with pytest.raises(HarnessInputError, match="expected one of"):
        JuliaAdjoint(solver="Rodas5")


def test_unknown_sensealg_and_route_list_valid_names():
    with pytest.raises(HarnessInputError, match=r"'GaussKronrodAdjoint'.*'BacksolveAdjoint'"):
        JuliaAdjoint("GaussKronrodAdjoint")
    with pytest.raises(HarnessInputError, match=r"unknown Julia route 'zygote'.*'finite_difference'"):
        JuliaAdjoint(route="zygote")
    with pytest.raises(HarnessInputError, match="python_jacobian"):
        JuliaForwardSensitivity(route="python_vjp")


@pytest.mark.parametrize("route", ["python_vjp", "finite_difference"])
@pytest.mark.parametrize("ad", ["ZygoteVJP", "EnzymeVJP", "ReverseDiffVJP", "automatic"])
def test_julia_ad_through_python_is_refused(route, ad):
    with pytest.raises(HarnessInputError, match=rf"GaussAdjoint\(autojacvec={ad}\) with route '{route}'"):
        JuliaAdjoint("GaussAdjoint", route=route, vjp=ad)


@pytest.mark.parametrize("sensealg", ["ForwardDiffSensitivity", "ZygoteAdjoint", "ReverseDiffAdjoint"])
def test_discretise_then_differentiate_through_python_is_refused(sensealg):
    with pytest.raises(HarnessInputError, match=rf"sensealg '{sensealg}' with route 'python_vjp'.*#334"):
        JuliaAdjoint(sensealg, route="python_vjp")


def test_native_route_accepts_zygote_only():
    assert JuliaAdjoint(route="native", vjp="ZygoteVJP").vjp == "ZygoteVJP"
    with pytest.raises(HarnessInputError, match="ZygoteVJP"):
        JuliaAdjoint(route="native", vjp="EnzymeVJP")


def test_bad_tolerance_and_maxiters():
    with pytest.raises(HarnessInputError, match="rtol"):
        JuliaAdjoint(rtol=-1.0)
    with pytest.raises(HarnessInputError, match="maxiters"):
        JuliaAdjoint(maxiters=0)


# ----------------------------------------------------------------------------- option mapping
@pytest.mark.parametrize("python, julia", sorted(names.PYTHON_TO_JULIA_SOLVER.items()))
def test_python_solver_names_map_to_whitelisted_julia_solvers(python, julia):
    from harness.solvers import SOLVERS

    assert python in SOLVERS
    assert names.julia_solver_for(python) == julia
    assert names.check_julia_solver(julia).stiff == SOLVERS[python].implicit


def test_engine_settings_win_over_options():
    options = SolveOptions("RadauIIA5", 1e-7, 1e-9)
    s = resolve_settings(JuliaAdjoint(), options)
    assert (s.solver, s.stiff, s.rtol, s.atol) == ("RadauIIA5", True, 1e-7, 1e-9)
    s = resolve_settings(JuliaAdjoint(solver="Tsit5", rtol=1e-10), options)
    assert (s.solver, s.stiff, s.rtol, s.atol) == ("Tsit5", False, 1e-10, 1e-9)
    assert names.julia_solver_for("KenCarp4") == "KenCarp4"
    with pytest.raises(HarnessInputError, match="unknown Julia solver 'LSODA'"):
        resolve_settings(JuliaAdjoint(), SolveOptions("LSODA"))


def test_engine_names_and_rows():
    assert JuliaAdjoint("GaussAdjoint", route="python_vjp").name == "Julia GaussAdjoint (Python VJP)"
    assert JuliaAdjoint(route="finite_difference").name == "Julia GaussAdjoint (finite differences)"
    rows = julia_engines()
    assert len({e.name for e in rows}) == len(rows)
    assert {e.sensealg for e in rows if isinstance(e, JuliaAdjoint)} == set(names.ADJOINT_SENSEALGS
                                                                           + names.DISCRETE_SENSEALGS)
    # the discrete adjoint only where Julia AD can see f
    assert {e.route for e in rows if getattr(e, "sensealg", None) in names.DISCRETE_SENSEALGS} == {"native"}
    assert all(callable(e.compute) for e in rows)
    hash(rows[0])  # frozen values


# ----------------------------------------------------------------------------- layout
def test_flat_state_is_feature_major_and_julia_reshape_recovers_z():
    z = np.arange(12.0).reshape(4, 3)  # B = 4, N = 3
    y = layout.flat_state(z)
    assert y.flags.c_contiguous and np.array_equal(y, flat(z))
    # Julia's reshape(u, B, N) is column-major: numpy's order="F" reshape reproduces it.
    assert np.array_equal(y.reshape(4, 3, order="F"), z)
    assert np.array_equal(layout.batch_state(y, 4), z)
    with pytest.raises(ValueError):
        layout.batch_state(y, 5)


def test_states_and_loss_table_round_trip():
    rng = np.random.default_rng(0)
    z_k = rng.normal(size=(3, 4, 2))  # (K, B, N)
    columns = np.stack([flat(z) for z in z_k], axis=1)  # what Julia's states_at returns, n×K
    assert np.array_equal(layout.states_at_times(columns, 4), z_k)
    assert np.array_equal(layout.states_at_times(columns[:, 0], 4), z_k[:1])  # K = 1 as a vector
    G = layout.loss_gradient_table(z_k)
    assert G.shape == (8, 3) and G.flags.f_contiguous and np.array_equal(G, columns)


# ----------------------------------------------------------------------------- unpacking
def test_solver_stats_and_retcode():
    stats = results.solver_stats(np.array([120, 3, 7, 20, 2]))
    assert (stats.n_rhs, stats.n_jac, stats.n_lu, stats.n_accepted, stats.n_rejected) == (120, 3, 7, 20, 2)
    results.check_retcode(True, "Success", 10.0, 10.0, "Tsit5")
    with pytest.raises(SolverError, match=r"Julia Tsit5 failed at t = 0\.25 \(target t = 10\): retcode MaxIters"):
        results.check_retcode(False, "MaxIters", 0.25, 10.0, "Tsit5")


def test_adjoint_result_and_nonfinite_gradient():
    dtheta, dz0 = results.adjoint_result(np.arange(6.0), np.arange(17.0), batch=3, n_params=17)
    assert dtheta.shape == (17,) and np.array_equal(dz0, np.arange(6.0).reshape(2, 3).T)
    with pytest.raises(ValueError, match="expected"):
        results.adjoint_result(np.arange(6.0), np.arange(5.0), batch=3, n_params=17)
    with pytest.raises(SolverError, match="not finite"):
        results.finite_gradient(np.array([np.nan]), np.zeros((1, 1)), "e")


def test_forward_sensitivity_result_adds_identity_part():
    G = np.arange(12.0).reshape(4, 3)  # n = 4, K = 3
    grad_q = np.concatenate((np.ones(5), np.zeros(4)))
    dtheta, dz0 = results.forward_sensitivity_result(grad_q, G, batch=2, n_params=5)
    assert np.array_equal(dtheta, np.ones(5))
    assert np.array_equal(flat(dz0), G.sum(axis=1))


# ----------------------------------------------------------------------------- callbacks
@pytest.mark.parametrize("decay", [None, (1.0, 1000.0)])
def test_callbacks_are_the_python_model_on_flat_states(decay):
    model = MLP((2, 5, 2), activation="softplus", decay=None if decay is None else np.array(decay))
    rng = np.random.default_rng(1)
    theta, batch = model.init(rng), 4
    z, a = rng.normal(size=(batch, 2)), rng.normal(size=(batch, 2))
    dyn = PythonDynamics(model, batch)
    u, lam = flat(z).copy(), flat(a).copy()
    f, a_z, a_theta = model.vjp(0.0, z, theta, a)
    np.testing.assert_array_equal(dyn.rhs(u, theta, 0.0), flat(f))
    np.testing.assert_array_equal(dyn.vjp(lam, u, theta, 0.0), flat(a_z))
    np.testing.assert_array_equal(dyn.vjp_p(lam, u, theta, 0.0), a_theta)
    J, PJ = dyn.jac(u, theta, 0.0), dyn.paramjac(u, theta, 0.0)
    assert J.shape == (8, 8) and PJ.shape == (8, model.n_params)
    np.testing.assert_allclose(J.T @ lam, flat(a_z), rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(PJ.T @ lam, a_theta, rtol=1e-13, atol=1e-13)
    assert dict(dyn.calls) == {"rhs": 1, "vjp": 1, "vjp_p": 1, "jac": 1, "paramjac": 1}
    for out in (dyn.rhs(u, theta, 0.0), J, PJ):
        assert out.dtype == np.float64 and out.flags.c_contiguous


def test_callbacks_refuse_non_float64():
    dyn = PythonDynamics(MLP((2, 3, 2)), 1)
    with pytest.raises(TypeError, match="float64"):
        dyn.rhs(np.zeros(2, dtype=object), np.zeros(17), 0.0)


# ----------------------------------------------------------------------------- status, doctor, setup
def test_compat_semantics():
    assert environment.compat_allows("7.107", "7.112.3")
    assert not environment.compat_allows("7.107", "7.106.9")
    assert not environment.compat_allows("7.107", "8.0.0")
    assert environment.compat_allows("0.7", "0.7.11") and not environment.compat_allows("0.7", "0.8.0")
    assert environment.compat_allows("6, 7", "6.3.0") and environment.compat_allows("=0.9.34", "0.9.34")
    assert environment.compat_allows("^1.10.3", "1.11.2") and not environment.compat_allows("^1.10.3", "1.10.2")


def _empty_env(tmp_path):
    return {"PYTHON_JULIAPKG_PROJECT": str(tmp_path / "project"), "PATH": ""}


def test_status_and_doctor_when_julia_is_absent(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", "")  # no julia on PATH
    status = julia_status(environ=_empty_env(tmp_path))
    assert not status.available
    assert status.reason  # one line, never empty when unavailable
    assert "\n" not in status.reason
    by_name = {c.name: c for c in status.checks}
    assert not by_name["julia"].ok and "harness julia setup" in by_name["julia"].detail
    assert not by_name["packages"].ok
    report = doctor_report(status)
    assert "python  available" in report
    assert "julia   unavailable: " in report


def test_status_reads_the_manifest(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", "")
    env = _empty_env(tmp_path)
    project = Path(env["PYTHON_JULIAPKG_PROJECT"])
    project.mkdir()
    lines = ['julia_version = "1.11.2"', 'manifest_format = "2.0"']
    for name, (uuid, compat) in environment.required_packages().items():
        version = compat + (".5" if compat.count(".") == 1 else ".5.0")  # inside each bound
        version = {"SciMLSensitivity": "7.100.0", "Zygote": "99.0.0"}.get(name, version)
        lines += [f"[[deps.{name}]]", f'uuid = "{uuid}"', f'version = "{version}"']
    (project / "Manifest.toml").write_text("\n".join(lines) + "\n")
    checks = {c.name: c for c in julia_status(environ=env).checks}
    assert checks["OrdinaryDiffEq"].ok and checks["PythonCall"].ok
    assert not checks["SciMLSensitivity"].ok and "'7.107' required" in checks["SciMLSensitivity"].detail
    assert not checks["Zygote"].ok


def test_setup_refuses_without_juliacall_or_with_a_bad_path(monkeypatch, tmp_path):
    monkeypatch.setattr(install, "_python_package",
                        lambda name: environment.Check(name, name != "juliacall", "x"))
    plan = install.preflight(None, environ=_empty_env(tmp_path), probe=lambda url: True)
    assert plan.error.startswith("juliacall is not installed") and "pip install" in plan.error
    monkeypatch.setattr(install, "_python_package", lambda name: environment.Check(name, True, "x"))
    plan = install.preflight(str(tmp_path / "nope"), environ=_empty_env(tmp_path), probe=lambda url: True)
    assert plan.error == f"--julia {tmp_path / 'nope'}: not an executable file"


def test_setup_message_when_julia_cannot_be_downloaded(monkeypatch, tmp_path):
    monkeypatch.setattr(install, "_python_package", lambda name: environment.Check(name, True, "x"))
    monkeypatch.setattr(install.shutil, "which", lambda name: None)  # no julia, no juliaup
    probed = []
    plan = install.preflight(None, environ=_empty_env(tmp_path), probe=lambda url: probed.append(url) or False)
    assert probed == [install.JULIA_VERSIONS_URL]
    assert "\n" not in plan.error
    assert "(julialang-s3.julialang.org) is unreachable" in plan.error
    assert "harness julia setup --julia /path/to/julia" in plan.error and "PYTHON_JULIAPKG_EXE" in plan.error


def test_setup_message_when_packages_cannot_be_downloaded(monkeypatch, tmp_path):
    monkeypatch.setattr(install, "_python_package", lambda name: environment.Check(name, True, "x"))
    julia = tmp_path / "julia"
    julia.write_text("#!/bin/sh\n")
    julia.chmod(0o755)
    env = {**_empty_env(tmp_path), "JULIA_PKG_SERVER": "https://mirror.example"}
    plan = install.preflight(str(julia), environ=env, probe=lambda url: url != "https://mirror.example")
    assert plan.julia == str(julia.resolve())
    assert "package server (mirror.example) is unreachable" in plan.error and "JULIA_PKG_SERVER" in plan.error


def test_setup_exits_2_with_one_line(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(install, "preflight", lambda *a, **k: install.Preflight(None, "no Julia, no network"))
    assert install.run_setup(None) == 2
    assert capsys.readouterr().err == "harness julia setup: no Julia, no network\n"


def test_cli_register_sets_func():
    import argparse

    from harness.julia.cli import register

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    args = parser.parse_args(["julia", "setup", "--julia", "/opt/julia/bin/julia"])
    assert args.julia == "/opt/julia/bin/julia" and callable(args.func)
    assert callable(parser.parse_args(["doctor"]).func)


def test_importing_harness_never_imports_juliacall():
    code = ("import sys, harness, harness.julia, harness.sensitivity;"
            "from harness.julia import julia_status, julia_engines; julia_status(); julia_engines();"
            "bad = [m for m in ('juliacall', 'juliapkg', 'diffeqpy') if m in sys.modules];"
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
