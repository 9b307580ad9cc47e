"""The command line: the main job end to end (shortened), exit codes, one-line errors, resume."""

import json
import subprocess
import sys

import numpy as np
import pytest

import harness
from harness.cli import main


def run_cli(*args, cwd=None):
    """The installed entry point in a subprocess, as a user runs it."""
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=300)


def test_reproduce_short_run_writes_complete_report(tmp_path):
    out = tmp_path / "rep"
    proc = run_cli("reproduce", "--steps", "60", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    # the ground truth fits its own data perfectly: -log 2π
    assert f"Log-likelihood (per datapoint): {-np.log(2 * np.pi):.3f}" in proc.stdout
    assert "tutorial:   -283.869" in proc.stdout
    history = json.loads((out / "history.json").read_text())
    steps = [r["step"] for r in history["history"]]
    assert steps == [0, 50, 60]
    lls = [r["loglik_per_datapoint"] for r in history["history"]]
    assert lls[-1] > lls[0]  # training improves the fit
    for name in ("report.md", "training_curve.png", "truth_vs_learnt.png", "random_models.png"):
        assert (out / name).stat().st_size > 0
    assert "| 50 |" in (out / "report.md").read_text()
    assert not (out / "checkpoint.npz").exists()  # a finished run leaves nothing to resume
    assert history["provenance"]["harness_version"] == harness.__version__


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["reproduce", "--rtol", "-1"], "expected a finite number > 0"),
        (["reproduce", "--solver", "RK99", "--steps", "0"], "unknown solver 'RK99'"),
        (["reproduce", "--engine", "Magic", "--steps", "0"], "unknown engine 'Magic'"),
        (["reproduce", "--problem-file", "/nonexistent.npz", "--steps", "0"], "does not exist"),
        (["reproduce", "--out", "/proc/not-writable", "--steps", "0"], "not writable"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args, fragment, tmp_path):
    proc = run_cli(*args, cwd=tmp_path)
    assert proc.returncode == 2
    assert fragment in proc.stderr
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert not list(tmp_path.iterdir())  # nothing half-written


def test_corrupt_problem_file(tmp_path):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    proc = run_cli("reproduce", "--problem-file", str(bad), "--out", str(tmp_path / "o"))
    # one line of our own, not numpy's advice to load the file "unsafely using allow_pickle"
    assert proc.returncode == 2 and "is not a .npz archive" in proc.stderr and "allow_pickle" not in proc.stderr
    assert len(proc.stderr.splitlines()) == 1
    incomplete = tmp_path / "incomplete.npz"
    np.savez(incomplete, theta=np.zeros(17))
    proc = run_cli("gradcheck", "--problem-file", str(incomplete))
    assert proc.returncode == 2 and "is missing" in proc.stderr and "z0" in proc.stderr


def test_problem_file_round_trip_and_nan(tmp_path):
    problem = harness.seed_problem(batch=10)
    path = harness.save_problem(problem, tmp_path / "p.npz")
    loaded = harness.load_problem(path)
    assert np.array_equal(loaded.theta, problem.theta) and np.array_equal(loaded.data, problem.data)
    assert loaded.model.widths == problem.model.widths
    arrays = dict(np.load(path))
    arrays["data"][0, 3, 1] = np.nan
    np.savez(tmp_path / "nan.npz", **arrays)
    with pytest.raises(harness.HarnessInputError, match="data contains 1 NaN or inf"):
        harness.load_problem(tmp_path / "nan.npz")
    arrays = dict(np.load(path))
    arrays["times"] = np.array([0.0])
    np.savez(tmp_path / "t.npz", **arrays)
    with pytest.raises(harness.HarnessInputError, match="expected t1 > t0"):
        harness.load_problem(tmp_path / "t.npz")


def test_gradcheck_json_on_problem_file(tmp_path, capsys):
    path = harness.save_problem(harness.multi_time_problem(batch=20), tmp_path / "p.npz")
    code = main(["gradcheck", "--problem-file", str(path), "--json", "--tol", "1e-8"])
    report = json.loads(capsys.readouterr().out)
    assert code == 0 and report["ok"]
    names = [e["name"] for e in report["engines"]]
    for engine in ("BacksolveAdjoint", "InterpolatingAdjoint", "QuadratureAdjoint", "FiniteDifferences"):
        assert engine in names
    assert any(e["status"] == "unavailable" and "Julia" in e["name"] for e in report["engines"]) or any(
        "Julia" in n for n in names)  # Julia rows are shown, never silently dropped
    for e in report["engines"]:
        if e["status"] == "ok":
            assert e["rel_error"] <= e["bound"] and len(e["theta_grad"]) == 17


def test_training_resumes_bit_for_bit(tmp_path):
    problem = harness.seed_problem(batch=50)
    full = harness.train(problem, steps=30, log_every=10, progress=False)
    ckpt = tmp_path / "ck.npz"
    stop_after = 12

    def interrupt(record):
        if record["step"] >= stop_after:
            raise KeyboardInterrupt

    # Simulate Ctrl-C inside step 12 (after the periodic checkpoint at step 10, checkpoint_every=5):
    # the interrupt saves the 12 completed steps, not the older periodic checkpoint
    with pytest.raises(KeyboardInterrupt):
        harness.train(problem, steps=30, log_every=4, progress=False, checkpoint=ckpt,
                      checkpoint_every=5, on_log=interrupt)
    assert ckpt.exists()
    resumed = harness.train(problem, steps=30, log_every=4, progress=False, checkpoint=ckpt,
                            checkpoint_every=5)
    assert resumed.resumed_from == stop_after
    uninterrupted = harness.train(problem, steps=30, log_every=4, progress=False)
    assert np.array_equal(resumed.theta, uninterrupted.theta)
    assert np.array_equal(full.theta, uninterrupted.theta)
    assert [r["step"] for r in resumed.history] == [r["step"] for r in uninterrupted.history]


def test_sigint_saves_checkpoint_and_resume(tmp_path, monkeypatch, capsys, ctrl_c_handler):
    """A real SIGINT during `harness reproduce`, then the same command again.

    The signal is raised by the process itself at its 7th gradient evaluation (an event in the run,
    not a sleep that may land before the run starts or after it ends); the interrupt stops that
    step at once, the checkpoint of the 6 completed steps is saved, and the CLI exits with 130. Run
    again, it resumes and ends exactly where an uninterrupted run ends.
    """
    import signal

    import harness.training as training

    real_gradient, calls = training.gradient, []

    def gradient_then_sigint(*args, **kwargs):
        calls.append(1)
        if len(calls) == 7:
            signal.raise_signal(signal.SIGINT)
        return real_gradient(*args, **kwargs)

    out, straight = tmp_path / "rep", tmp_path / "straight"
    command = ["reproduce", "--steps", "20"]
    monkeypatch.setattr(training, "gradient", gradient_then_sigint)
    assert main([*command, "--out", str(out)]) == 130
    err = capsys.readouterr().err
    assert "resume" in err and "Traceback" not in err
    assert (out / "checkpoint.npz").exists()
    monkeypatch.setattr(training, "gradient", real_gradient)
    assert main([*command, "--out", str(out)]) == 0
    assert "resumed from the checkpoint at step 6" in capsys.readouterr().out
    assert main([*command, "--out", str(straight)]) == 0
    a = json.loads((out / "history.json").read_text())
    b = json.loads((straight / "history.json").read_text())
    assert a["theta"] == b["theta"]
    assert [r["loglik_per_datapoint"] for r in a["history"]] == [r["loglik_per_datapoint"] for r in b["history"]]


def test_bench_json_runs(capsys):
    assert main(["bench", "--repeats", "2", "--no-stiff", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    names = [r["name"] for r in report["rows"]]
    assert names[0].startswith("baseline") and "InterpolatingAdjoint" in names
    for row in report["rows"]:
        assert row["median_ms"] > 0 and row["peak_memory_mb"] > 0


def test_method_is_a_deprecated_alias_of_engine(capsys):
    """`reproduce --method X` (the older spelling) still selects the engine X, and says it is deprecated."""
    from harness.cli import build_parser

    args = build_parser().parse_args(["reproduce", "--method", "QuadratureAdjoint"])
    assert args.engine == "QuadratureAdjoint" and not hasattr(args, "method")
    assert capsys.readouterr().err.strip() == "harness: --method is deprecated; use --engine"
    assert build_parser().parse_args(["reproduce"]).engine == "BacksolveAdjoint"
