"""Augmented Neural ODEs, time-dependent fields and irregular observations (issue 17): the model's
derivatives with t as an input, the fast path against them, the masked and augmented loss, problem
files with and without the new keys, and the refusals of engines that cannot express them.

The engines' gradients on the `augmented`, `time_dependent` and `irregular` catalogue problems are
cross-validated in test_gradients.py, with the seed problem's bounds.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from harness._stage_vjps import StageVJPs
from harness.errors import HarnessInputError
from harness.model import MLP
from harness.problems import (
    Problem,
    augment_problem,
    build_problem,
    grid_and_mask,
    load_problem,
    make_problem,
    save_problem,
)
from harness.sensitivity import ForwardSensitivity, QuadratureAdjoint, gradient

ROOT = Path(__file__).resolve().parent.parent

# Central differences with step 1e-6 on O(1) functions: truncation ~1e-12, rounding ~1e-10; bound 1e-7.
FD_STEP, FD_BOUND = 1e-6, 1e-7


def _central(fn, x, step=FD_STEP):
    """d fn / dx, column by column: fn(x) (M,) for x (D,) -> (M, D)."""
    columns = []
    for j in range(x.size):
        e = np.zeros_like(x)
        e[j] = step
        columns.append((fn(x + e) - fn(x - e)) / (2 * step))
    return np.stack(columns, axis=-1)


@pytest.fixture
def timed():
    model = MLP((3, 5, 4, 3), time_dependent=True, decay=np.array([1.0, 2.0, 3.0]))
    rng = np.random.default_rng(0)
    return model, model.init(rng), rng.normal(size=(4, 3)), rng.normal(size=(4, 3))


def test_time_dependent_layout_and_identity():
    plain, timed = MLP((2, 3, 2)), MLP((2, 3, 2), time_dependent=True)
    assert timed.layout[0].shape == (3, 3) and timed.n_params == plain.n_params + 3
    assert timed.layer_widths == (3, 3, 2) and plain.layer_widths == (2, 3, 2)
    assert plain.autonomous and not timed.autonomous
    assert plain != timed and MLP((2, 3, 2), time_dependent=True) == timed
    assert hash(MLP((2, 3, 2), time_dependent=True)) == hash(timed)
    assert "time-dependent" in timed.describe()
    with pytest.raises(HarnessInputError, match="time_dependent="):
        MLP((2, 3, 2), time_dependent="yes")


def test_time_dependent_field_depends_on_t(timed):
    model, theta, z, _ = timed
    assert np.max(np.abs(model.f(0.0, z, theta) - model.f(1.0, z, theta))) > 1e-3
    # one time per row equals row-by-row evaluation at each row's time
    t_rows = np.array([0.0, 0.5, 1.0, 2.0])
    rows = np.stack([model.f(t, z[b : b + 1], theta)[0] for b, t in enumerate(t_rows)])
    np.testing.assert_allclose(model.f(t_rows, z, theta), rows, rtol=0, atol=1e-14)


def test_time_dependent_derivatives_match_finite_differences(timed):
    model, theta, z, a = timed
    t = 0.7
    J = model.jac(t, z, theta)
    J_fd = np.stack([_central(lambda zb: model.f(t, zb[None], theta)[0], z[b]) for b in range(z.shape[0])])
    assert np.max(np.abs(J - J_fd)) < FD_BOUND
    J_theta = model.jac_theta(t, z, theta)
    J_theta_fd = _central(lambda th: model.f(t, z, th).reshape(-1), theta).reshape(J_theta.shape)
    assert np.max(np.abs(J_theta - J_theta_fd)) < FD_BOUND
    f, a_z, a_theta = model.vjp(t, z, theta, a)
    # the VJPs are exact contractions of the Jacobians (no ∂f/∂t row leaks into a_z): rounding only
    np.testing.assert_allclose(a_z, np.einsum("bij,bi->bj", J, a), rtol=0, atol=1e-13)
    np.testing.assert_allclose(a_theta, np.einsum("bip,bi->p", J_theta, a), rtol=0, atol=1e-13)


def test_stage_vjps_read_each_slots_time(timed):
    # two slots recorded at different times: the θ part of each uses its own t (rounding only)
    model, theta, z, a = timed
    tape = StageVJPs(model, theta, batch=4, n_slots=2)
    outputs = []
    for slot, t in ((0, 0.3), (1, 1.9)):
        f, a_z = np.empty((3, 4)), np.empty((3, 4))
        tape.set_time(t)
        tape.vjp(slot, z.T.copy(), a.T.copy(), f, a_z)
        outputs.append((t, f, a_z))
    for t, f, a_z in outputs:
        f_ref, a_z_ref, _ = model.vjp(t, z, theta, a)
        np.testing.assert_allclose(f, f_ref.T, rtol=0, atol=1e-13)
        np.testing.assert_allclose(a_z, a_z_ref.T, rtol=0, atol=1e-13)
    weights = np.array([[0.25, 0.75]])
    expected = 0.25 * model.vjp(0.3, z, theta, a)[2] + 0.75 * model.vjp(1.9, z, theta, a)[2]
    np.testing.assert_allclose(tape.theta_cotangents(weights)[0], expected, rtol=0, atol=1e-13)


# ----------------------------------------------------------------------------------- augmentation
def test_augmented_problem_pads_z0_and_reads_n_components():
    problem = build_problem("augmented", batch=3)
    assert problem.augment == 1 and problem.observed_dim == 2 and problem.z0.shape == (3, 3)
    assert np.all(problem.z0[:, 2] == 0.0) and problem.data.shape == (1, 3, 2)
    z = np.random.default_rng(1).normal(size=(1, 3, 3))
    loss, dL_dz = problem.loss_terms(z)
    residual = z[..., :2] - problem.data
    assert loss == pytest.approx(0.5 * np.sum(residual**2) + 3 * math.log(2 * math.pi), rel=1e-15)
    assert dL_dz.shape == (1, 3, 3) and np.all(dL_dz[..., 2] == 0.0)
    np.testing.assert_array_equal(dL_dz[..., :2], residual)
    assert problem.perfect_loglik_per_datapoint == pytest.approx(-math.log(2 * math.pi))


def test_augmented_problem_rejects_bad_values():
    model = MLP((3, 3, 3))
    theta = model.init(np.random.default_rng(0))
    base = dict(model=model, theta=theta, t0=0.0, times=[1.0], data=np.zeros((1, 2, 2)), augment=1)
    with pytest.raises(HarnessInputError, match="augment=3"):
        Problem(z0=np.zeros((2, 3)), **{**base, "augment": 3})
    with pytest.raises(HarnessInputError, match="not zero"):
        Problem(z0=np.ones((2, 3)), **base)
    with pytest.raises(HarnessInputError, match=r"z0 has shape \(2, 4\)"):
        Problem(z0=np.zeros((2, 4)), **base)
    with pytest.raises(HarnessInputError, match="already augmented"):
        augment_problem(build_problem("augmented", batch=2), 1)


def test_every_engine_reports_dz0_of_the_observed_components():
    # the engines solve all N + A components; `gradient` hands back dL/dz0 of the N observed ones
    problem = build_problem("augmented", batch=2)
    for engine in ("BacksolveAdjoint", "InterpolatingAdjoint", "QuadratureAdjoint", "ForwardSensitivity",
                   "FiniteDifferences"):
        assert gradient(problem, engine=engine, rtol=1e-6, atol=1e-6).dz0.shape == (2, 2), engine


def test_augment_problem_keeps_data_and_widens_the_model():
    plain = build_problem("seed", batch=3)
    augmented = augment_problem(plain, 2, seed=5)
    assert augmented.model.widths == (4, 3, 4) and augmented.augment == 2
    np.testing.assert_array_equal(augmented.observed_z0, plain.z0)
    np.testing.assert_array_equal(augmented.data, plain.data)
    assert augment_problem(plain, 0) is plain
    same = build_problem("seed", batch=3, augment=2)
    np.testing.assert_array_equal(same.z0, augmented.z0)


def test_make_problem_with_augmented_ground_truth_scores_the_perfect_fit():
    # the data are the augmented ground truth's first N components, so θ_true fits them exactly up to
    # the data solve's tolerance (1e-6 relative over t = 1): log-likelihood within 1e-6 of perfect
    problem = make_problem(MLP((2, 4, 2)), batch=5, times=(1.0,), box=1.0, augment=1)
    result = gradient(problem, problem.theta_true, engine=ForwardSensitivity(), solver="DP8", rtol=1e-10, atol=1e-10)
    gap = problem.perfect_loglik_per_datapoint - problem.loglik_per_datapoint(result.loss)
    assert 0 <= gap < 1e-6


# ----------------------------------------------------------------------------------- irregular
def test_grid_and_mask_from_per_trajectory_lists():
    grid, data, mask = grid_and_mask([[1.0, 3.0], [2.0], [1.0, 2.0, 3.0]],
                                     [[[1.0], [3.0]], [[20.0]], [[100.0], [200.0], [300.0]]])
    np.testing.assert_array_equal(grid, [1.0, 2.0, 3.0])
    np.testing.assert_array_equal(mask, [[True, False, True], [False, True, True], [True, False, True]])
    np.testing.assert_array_equal(data[:, :, 0], [[1.0, 0.0, 100.0], [0.0, 20.0, 200.0], [3.0, 0.0, 300.0]])
    with pytest.raises(HarnessInputError, match="not strictly increasing"):
        grid_and_mask([[2.0, 1.0]], [[[0.0], [0.0]]])
    with pytest.raises(HarnessInputError, match="one of each per trajectory"):
        grid_and_mask([[1.0]], [])


def test_masked_loss_counts_observed_datapoints_only():
    model = MLP((2, 3, 2))
    theta = model.init(np.random.default_rng(0))
    mask = np.array([[True, False], [True, True]])
    data = np.ones((2, 2, 2))
    data[0, 1] = np.nan  # unobserved: ignored, NaN accepted
    problem = Problem(model, theta, np.zeros((2, 2)), 0.0, [1.0, 2.0], data, mask=mask)
    assert problem.n_datapoints == 3 and problem.data[0, 1, 0] == 0.0
    z = np.full((2, 2, 2), 3.0)
    loss, dL_dz = problem.loss_terms(z)
    # three observed pairs, each ½ ‖(2, 2)‖² = 4, plus (N/2) log 2π each
    assert loss == pytest.approx(3 * 4.0 + 3 * math.log(2 * math.pi), rel=1e-15)
    assert np.all(dL_dz[0, 1] == 0.0) and np.all(dL_dz[1] == 2.0)
    assert problem.loglik_per_datapoint(loss) == pytest.approx(-loss / 3)
    with pytest.raises(HarnessInputError, match="False everywhere"):
        Problem(model, theta, np.zeros((2, 2)), 0.0, [1.0, 2.0], data, mask=np.zeros((2, 2), bool))
    with pytest.raises(HarnessInputError, match="expected bool"):
        Problem(model, theta, np.zeros((2, 2)), 0.0, [1.0, 2.0], data, mask=np.ones((2, 2)))


def test_unobserved_trajectory_has_zero_gradient():
    # a state observed nowhere adds nothing to L: its dL/dz0 row is exactly zero for every engine
    problem = build_problem("irregular", batch=3)
    mask = problem.mask.copy()
    mask[:, 1] = False
    mask[-1, 0] = True
    problem = Problem(problem.model, problem.theta, problem.z0, problem.t0, problem.times, problem.data,
                      mask=mask)
    for engine in ("ForwardSensitivity", "InterpolatingAdjoint", "QuadratureAdjoint"):
        result = gradient(problem, engine=engine, rtol=1e-8, atol=1e-8)
        assert np.all(result.dz0[1] == 0.0), engine
        assert np.any(result.dz0[0] != 0.0), engine


# ----------------------------------------------------------------------------------------- files
@pytest.mark.parametrize("name", ["augmented", "time_dependent", "irregular"])
def test_problem_file_round_trip_with_new_keys(tmp_path, name):
    problem = build_problem(name, batch=3)
    loaded = load_problem(save_problem(problem, tmp_path / "p.npz"))
    assert loaded.model == problem.model and loaded.augment == problem.augment
    np.testing.assert_array_equal(loaded.z0, problem.z0)
    np.testing.assert_array_equal(loaded.data, problem.data)
    assert (loaded.mask is None) == (problem.mask is None)
    if problem.mask is not None:
        np.testing.assert_array_equal(loaded.mask, problem.mask)
    with np.load(tmp_path / "p.npz") as npz:
        assert npz["z0"].shape == (3, problem.observed_dim)  # the file stores the observed z0


def test_old_problem_file_without_new_keys_loads(tmp_path):
    # written as files were before augment, time_dependent and mask existed: the original seven keys
    problem = build_problem("seed", batch=3)
    path = tmp_path / "old.npz"
    np.savez(path, widths=np.array([2, 3, 2]), activation=np.array("tanh"), theta=problem.theta,
             z0=problem.z0, t0=np.array(0.0), times=problem.times, data=problem.data)
    loaded = load_problem(path)
    assert loaded.augment == 0 and loaded.mask is None and loaded.model.autonomous
    assert loaded.model == problem.model and loaded.n_datapoints == 3
    np.testing.assert_array_equal(loaded.z0, problem.z0)


def test_problem_file_rejects_bad_new_keys(tmp_path):
    problem = build_problem("seed", batch=2)
    arrays = dict(widths=np.array([2, 3, 2]), activation=np.array("tanh"), theta=problem.theta,
                  z0=problem.z0, t0=np.array(0.0), times=problem.times, data=problem.data)
    for key, value, fragment in (("augment", np.array(1.5), "augment is float64"),
                                 ("mask", np.ones((1, 2)), "mask is float64"),
                                 ("augment", np.array(2), "augment=2")):
        np.savez(tmp_path / "bad.npz", **arrays, **{key: value})
        with pytest.raises(HarnessInputError, match=fragment):
            load_problem(tmp_path / "bad.npz")


# -------------------------------------------------------------------------------------- refusals
@pytest.mark.parametrize("name, fragment", [
    ("augmented", "augmented dimensions"), ("time_dependent", "time-dependent fields"),
    ("irregular", "a mask"),
])
def test_peer_adapters_refuse_in_one_line(name, fragment):
    from harness.peers.common import TorchdiffeqEngine

    # the refusal comes before any peer package is imported, so it holds with or without them
    engine = TorchdiffeqEngine("torchdiffeq", "odeint_adjoint", "DP5", 1e-6, 1e-6)
    with pytest.raises(HarnessInputError, match=fragment) as err:
        gradient(build_problem(name, batch=2), engine=engine)
    assert "\n" not in str(err.value)


def test_julia_native_route_refuses_time_dependent_fields():
    # refused before Julia starts (the native Julia MLP has no t input), so this runs without Julia
    from harness.julia.guards import check_model_for_route

    with pytest.raises(HarnessInputError, match="time-dependent"):
        check_model_for_route(MLP((2, 3, 2), time_dependent=True), "native", stiff=False, engine="GaussAdjoint")
    check_model_for_route(MLP((2, 3, 2)), "native", stiff=False, engine="GaussAdjoint")  # autonomous: taken


def test_quadrature_adjoint_uses_each_nodes_time():
    # were the nodes evaluated at one t, the time-dependent gradient would be off by O(1);
    # bound as test_gradients.py's solver catalogue: 100x the solver tolerance of 1e-8
    problem = build_problem("time_dependent", batch=2)
    ref = gradient(problem, engine=ForwardSensitivity(), solver="DP8", rtol=1e-11, atol=1e-11)
    got = gradient(problem, engine=QuadratureAdjoint(), rtol=1e-8, atol=1e-8)
    assert np.max(np.abs(got.dtheta - ref.dtheta)) <= 100 * 1e-8 * np.max(np.abs(ref.dtheta))


# ------------------------------------------------------------------------------ CLI and experiments
def test_gradcheck_augment_flag(tmp_path, capsys):
    import json

    from harness.cli import main

    path = save_problem(build_problem("multi_time", batch=3), tmp_path / "p.npz")
    code = main(["gradcheck", "--problem-file", str(path), "--augment", "1", "--json", "--no-julia"])
    report = json.loads(capsys.readouterr().out)
    assert code == 0 and report["ok"]
    ok = [e for e in report["engines"] if e["status"] == "ok"]
    assert ok and all(len(e["theta_grad"]) == 24 for e in ok)  # MLP 3-3-3: the augmented model's θ


def test_reproduce_augment_flag(tmp_path):
    from harness.reproduce import reproduce

    lines = []
    summary = reproduce(tmp_path / "rep", steps=2, augment=1, progress=False, echo=lines.append)
    assert any("augmented dimension" in line and "MLP 3-3-3" in line for line in lines)
    assert summary is not None and (tmp_path / "rep" / "report.md").is_file()
    with pytest.raises(HarnessInputError, match="augment=-1"):
        reproduce(tmp_path / "bad", steps=0, augment=-1, echo=lines.append)
    assert not (tmp_path / "bad").exists()


def test_experiment_spec_augment():
    from harness.compare.spec import parse_experiment

    document = {
        "problem": {"name": "reflection", "batch": 10, "augment": 1},
        "grid": {"engines": ["InterpolatingAdjoint"], "solvers": ["DP5"], "tolerances": [1e-6]},
        "training": {"engines": ["InterpolatingAdjoint"], "augment": [0, 1], "steps": 1},
        "claims": [{"says": "fits", "every": {"kind": "training"}, "metric": "gap_to_perfect", "at_most": 1.0}],
    }
    experiment = parse_experiment(document)
    assert experiment.problem.augment == 1 and experiment.training.augment == (0, 1)
    # the cell keys of problems without augmentation do not change: `augment` appears only when set
    assert "augment" not in parse_experiment({**document, "problem": {"name": "seed"}}).problem.as_dict()
    for table, key, value, fragment in (("problem", "augment", -1, "augment"),
                                        ("training", "augment", [], "augment")):
        bad = {**document, table: {**document[table], key: value}}
        with pytest.raises(HarnessInputError, match=fragment):
            parse_experiment(bad)


def test_training_cells_per_augmentation():
    from harness.compare._runner import experiment_cells
    from harness.compare.spec import load_experiment

    experiment = load_experiment(ROOT / "experiments" / "anode.toml")
    training = [c for c in experiment_cells(experiment) if c.kind == "training"]
    assert sorted((c.problem.augment, c.engine.label) for c in training) == [
        (a, e) for a in (0, 1) for e in sorted(("BacksolveAdjoint", "InterpolatingAdjoint"))]


@pytest.mark.parametrize("name", ["anode", "anode_annuli"])
def test_shipped_anode_report_claims_hold(name):
    # the shipped results, re-read: every claim the experiment file declares holds on its rows (one
    # per grid cell and per training run)
    import json

    from harness.compare._claims import evaluate, parse_claims
    from harness.compare.spec import tomllib  # tomli before Python 3.11

    document = tomllib.loads((ROOT / "experiments" / f"{name}.toml").read_text(encoding="utf-8"))
    claims = parse_claims(document["claims"], "[[claims]]")
    results = json.loads((ROOT / "reports" / "compare" / name / "results.json").read_text())
    outcomes = evaluate(claims, results["rows"] + results["training"])
    assert len(outcomes) == len(document["claims"]) >= 3
    assert all(o.holds for o in outcomes), [o.line() for o in outcomes if not o.holds]


# ------------------------------------------------------------------------------ the compiled path
def test_compiled_path_leaves_time_dependent_fields_to_numpy():
    # the numba kernels' first layer reads z only and their record has no `set_time`: a time-dependent
    # field must get the numpy StageVJPs even where the fast path is forced on
    import harness._compiled as compiled

    timed, plain = MLP((2, 3, 2), time_dependent=True), MLP((2, 3, 2))
    compiled.set_enabled(True)
    try:
        assert type(compiled.stage_vjps(timed, timed.init(np.random.default_rng(0)), 4, 1)) is StageVJPs
        assert compiled.status(timed) == "numpy: a time-dependent field (t as an input), which the kernels do not take"
        assert compiled.enabled(plain) == compiled.available()  # the plain model keeps the fast path
        problem = build_problem("time_dependent", batch=4)
        forced = gradient(problem, engine="InterpolatingAdjoint", rtol=1e-8, atol=1e-8)
    finally:
        compiled.set_enabled(None)
    # and the gradient is the time-dependent one: against ForwardSensitivity at the same tolerance,
    # 100x the tolerance (an adaptive solve's global error is 1-10x its tolerance, the adjoint adds
    # a second solve), while a dropped t input would be O(1) off
    ref = gradient(problem, engine=ForwardSensitivity(), solver="DP8", rtol=1e-11, atol=1e-11)
    assert np.max(np.abs(forced.dtheta - ref.dtheta)) <= 100 * 1e-8 * np.max(np.abs(ref.dtheta))
