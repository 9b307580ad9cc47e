"""Mutation score per package area, measured with mutmut (systematic mutants, not a hand-written list).

Usage: nice -n 10 python benchmarks/mutation_score.py [--area NAME ...] [--max-children N] [--list]
                                                      [--results PATH] [--keep]

For each area (AREAS below: the files it mutates and the fast test files that guard them) the tracked
files of the repository are copied into a scratch directory, `[tool.mutmut]` of the copy's
pyproject.toml is narrowed to that area, and `mutmut run` mutates every function of those files one
mutant at a time, running the tests that cover each function. The verdict of every mutant is read
from mutmut's own records (mutants/**/*.meta) and counted per area: killed (a test failed), survived
(every test passed), timeout, no tests (no selected test calls the function), and equivalent
(survivors listed in reports/mutation/equivalent.json with the reason each cannot change behaviour).

The results file (reports/mutation/results.json by default) keeps one entry per area, replaced when
that area is measured again, each with the date, commit, command, CPU, the counts, the names of the
survivors and the score: killed / non-equivalent checked mutants, where a timeout, a survivor and a
mutant no selected test reaches all count as not killed (conservative: a timeout often means the
mutant made a solve or a test hang, which a stricter count would call caught). Mutants mutmut did
not get to ("not checked", an interrupted run) are counted apart and left out of the score. The
hand-written catalogue of benchmarks/mutation_test.py remains the quick check.

The run is a benchmark, not part of the test suite: an area takes from minutes (compare/_claims.py)
to hours (sensitivity/) on one core.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SENSITIVITY_ENGINES = "sensitivity/ except _discrete.py, _compiled_loop.py"
SENSITIVITY_DISCRETE = "sensitivity/_discrete.py, _compiled_loop.py"

# area -> (files or globs to mutate, test files that guard them: fast ones that exercise behaviour)
AREAS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "compare/_claims.py": (
        ("harness/compare/_claims.py",),
        ("tests/test_claims.py", "tests/test_compare_claims.py", "tests/test_claim_properties.py",
         "tests/test_claim_edges.py", "tests/test_claim_evidence.py", "tests/test_claim_names.py"),
    ),
    "_metrics.py": (
        ("harness/_metrics.py", "harness/_distances.py"),
        ("tests/test_metrics.py", "tests/test_metric_properties.py"),
    ),
    "training.py": (
        ("harness/training.py",),
        ("tests/test_optimiser.py", "tests/test_training_behaviour.py", "tests/test_fail_safes.py",
         "tests/test_training_plumbing.py", "tests/test_training_checkpoints.py",
         "tests/test_robust.py::test_a_damaged_checkpoint_is_set_aside_in_one_line_and_training_starts_afresh"),
    ),
    "problems/": (
        ("harness/problems/*",),
        ("tests/test_problem.py", "tests/test_problem_file_properties.py", "tests/test_problem_behaviour.py",
         "tests/test_problem_catalogue.py", "tests/test_tutorial_exact.py", "tests/test_tutorial_draws.py",
         "tests/test_models.py", "tests/test_lynx_hare.py", "tests/test_catalogue_builders.py",
         "tests/test_problem_details.py", "tests/test_problem_file_checks.py", "tests/test_problem_file_keys.py",
         *(f"tests/test_robust.py::{name}" for name in (
             "test_a_growing_decay_is_refused_before_any_solve", "test_a_decay_whose_derivatives_overflow_is_refused",
             "test_observation_times_one_float_apart_are_refused_not_called_a_blow_up", "test_complex_data_is_refused",
             "test_text_where_numbers_go_is_refused", "test_an_object_array_is_refused_from_its_header",
             "test_declared_shapes_that_disagree_are_refused_before_decompression"))),
    ),
    "solvers/": (
        ("harness/solvers/*",),
        ("tests/test_solver_edges.py", "tests/test_scipy_blowups.py", "tests/test_first_step_input.py",
         "tests/test_step_budget_messages.py",
         "tests/test_fail_safes.py::test_the_budget_projects_with_the_smaller_estimate_after_a_slow_start",
         "tests/test_fail_safes.py::test_early_checks_allow_the_margin_and_no_more", "tests/test_solvers.py"),
    ),
    # the two files of solvers/ fixed after its measurement, measured again each with the same tests
    "solvers/_scipy_methods.py": (
        ("harness/solvers/_scipy_methods.py",),
        ("tests/test_solver_edges.py", "tests/test_scipy_blowups.py", "tests/test_step_budget_messages.py",
         "tests/test_solvers.py"),
    ),
    # _explicit_rk.py again after main added the stage inputs (PlainStepper.stage_inputs, _StepInterpolant's)
    "solvers/_explicit_rk.py": (
        ("harness/solvers/_explicit_rk.py",),
        ("tests/test_solver_edges.py", "tests/test_step_budget_messages.py",
         "tests/test_fail_safes.py::test_the_budget_projects_with_the_smaller_estimate_after_a_slow_start",
         "tests/test_fail_safes.py::test_early_checks_allow_the_margin_and_no_more", "tests/test_solvers.py"),
    ),
    "solvers/__init__.py": (
        ("harness/solvers/__init__.py",),
        ("tests/test_solver_edges.py", "tests/test_first_step_input.py", "tests/test_step_budget_messages.py",
         "tests/test_solvers.py"),
    ),
    # a first, scoped measurement of solvers/: the step budget (the fail-safe of issue 29) with its own
    # fast tests; the whole area with every solver test takes hours on two cores
    "solvers/_step_budget.py": (
        ("harness/solvers/_step_budget.py",),
        ("tests/test_fail_safes.py", "tests/test_step_budget_messages.py",
         *(f"tests/test_solvers.py::{name}" for name in (
            "test_absurd_dynamics_fail_at_the_first_check_with_one_line",
            "test_runaway_dynamics_fail_after_a_bounded_number_of_steps", "test_an_end_time_beyond_reach_fails_fast",
            "test_a_slow_start_is_not_a_runaway", "test_merely_stiff_solves_still_finish",
            "test_max_steps_is_honoured", "test_bad_max_steps_rejected"))),
    ),
    # sensitivity/ measured in parts, each with tiny problems (a full pass of the area's own test files
    # takes two minutes, and a mutant nothing kills runs every test that reaches its function); the
    # parts mutate disjoint files, so `--read` of their kept copies together scores "sensitivity/"
    SENSITIVITY_ENGINES: (
        tuple(f"harness/sensitivity/{name}" for name in (
            "__init__.py", "_adjoint_systems.py", "_backsolve.py", "_backward.py", "_finite_differences.py",
            "_forward_sensitivity.py", "_gauss.py", "_interpolating.py", "_model_needs.py", "_quadrature.py",
            "_registry.py", "_result.py", "algorithms.py")),
        ("tests/test_engines_closed_form_small.py", "tests/test_engine_edges_small.py",
         "tests/test_engine_declarations.py", "tests/test_compiled_loop_small.py", "tests/test_engine_registry.py",
         *(f"tests/test_gradients.py::{name}" for name in (
             "test_backward_solve_first_step", "test_engine_by_name_class_or_instance",
             "test_unknown_engine_name_lists_names", "test_gradient_rejects_bad_settings",
             "test_gradient_rejects_wrong_theta_shape")),
         "tests/test_independent_references.py::test_the_augmented_gradient_is_the_first_columns_not_the_last",
         # gradient()'s memory check, with the available memory lowered (nothing large is allocated)
         "tests/test_gradient_memory.py::test_the_python_api_refuses_with_the_number_needed",
         "tests/test_gradient_memory.py::test_a_gradient_that_fits_is_computed"),
    ),
    SENSITIVITY_DISCRETE: (
        ("harness/sensitivity/_discrete.py", "harness/sensitivity/_compiled_loop.py"),
        ("tests/test_compiled_loop_small.py", "tests/test_discrete_adjoint.py",
         "tests/test_discrete_closed_form_small.py"),
    ),
}

# the whole of sensitivity/ in one run: its parts' files and fast tests together (the area's own slow
# test files, test_gradients.py and test_independent_references.py, take minutes per pass)
AREAS["sensitivity/"] = (
    ("harness/sensitivity/*",),
    tuple(dict.fromkeys(AREAS[SENSITIVITY_ENGINES][1] + AREAS[SENSITIVITY_DISCRETE][1])),
)

RESULTS = ROOT / "reports" / "mutation" / "results.json"
EQUIVALENT = ROOT / "reports" / "mutation" / "equivalent.json"

# mutmut's exit-code convention (mutmut.__main__.status_by_exit_code), by name
STATUS_NAMES = ("killed", "survived", "timeout", "no tests", "suspicious", "skipped", "segfault",
                "check was interrupted by user", "not checked", "caught by type check")


def _tracked_files() -> list[str]:
    out = subprocess.run(["git", "ls-files"], cwd=ROOT, check=True, capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if line]


def _narrowed_pyproject(text: str, mutate: tuple[str, ...], tests: list[str]) -> str:
    """The copy's pyproject.toml with `[tool.mutmut]` set to this area (any existing section replaced)."""
    text = re.sub(r"\n\[tool\.mutmut\][^\[]*", "\n", text)
    # one process per test run inside mutmut (its own workers are the parallelism); no xdist
    text = text.replace('addopts = "-ra -n auto"', 'addopts = "-ra"')
    section = (
        "\n[tool.mutmut]\n"
        'source_paths = ["harness"]\n'
        f"only_mutate = {json.dumps(list(mutate))}\n"
        f"pytest_add_cli_args_test_selection = {json.dumps(tests)}\n"
        # the area's fast tests only: a slow test (a 1000-step training, a Dask cluster) run per mutant
        # would cost hours; what it guards is measured elsewhere or not by this area
        'pytest_add_cli_args = ["-p", "no:xdist", "-p", "no:cacheprovider", "-x", "-q", "-m", "not slow"]\n'
        "timeout_multiplier = 5.0\n"
        "timeout_constant = 30.0\n"
    )
    return text.rstrip() + "\n" + section


def _first(tests) -> str:
    """The area's test files in the order listed, for tests/conftest.py (HARNESS_MUTATION_FIRST): mutmut
    hands each mutant's covering tests in no useful order, and a run stops at the first failure."""
    return ",".join(dict.fromkeys(t.split("::")[0] for t in tests))


def _statuses(scratch: Path) -> dict[str, str]:
    """mutant name -> verdict, from mutmut's .meta records in the scratch copy."""
    from mutmut.stats import status_by_exit_code  # the tool's own mapping, not a copy

    verdicts = {}
    for meta in (scratch / "mutants").rglob("*.meta"):
        record = json.loads(meta.read_text())
        for name, code in record.get("exit_code_by_key", {}).items():
            verdicts[name] = status_by_exit_code[code]
    return verdicts


def _cpu() -> str:
    from harness._provenance import cpu_model

    return cpu_model()


def _commit() -> str:
    out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                           capture_output=True, text=True).stdout.strip()
    return out.stdout.strip() + (" (with uncommitted changes)" if dirty else "")


def _equivalents(scratch: Path | None) -> tuple[dict[str, str], list[str]]:
    """The listed equivalent mutants that are still the mutant described, and the stale entries.

    mutmut numbers the mutants of a function in order, so an edit of the function renumbers them:
    each entry carries `mutated`, a fragment of the mutant's code, and counts only while the mutant
    of that name in this run's copy contains it (read from mutmut's mutated source, `mutants/...`).
    """
    if not EQUIVALENT.exists():
        return {}, []
    entries = json.loads(EQUIVALENT.read_text())
    sources = {}
    if scratch is not None:
        import ast

        for path in (scratch / "mutants").rglob("*.py"):
            text = path.read_text()
            if "__mutmut_" not in text:
                continue
            lines = text.splitlines()
            parts = path.relative_to(scratch / "mutants").with_suffix("").parts
            module = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)  # mutmut's naming
            for node in ast.walk(ast.parse(text)):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and "__mutmut_" in node.name:
                    sources[f"{module}.{node.name}"] = "\n".join(lines[node.lineno - 1:node.end_lineno])
    valid, stale = {}, []
    for name, entry in entries.items():
        source = sources.get(name)
        if source is not None and entry.get("mutated", "") in source:
            valid[name] = entry["reason"]
        elif source is not None:
            stale.append(name)
    return valid, stale


def _read(area: str, copies: list[Path], max_children: int) -> dict:
    """The score of `area` from the kept copies of earlier runs: one copy, or several whose runs mutated
    disjoint files of the area (its parts, measured apart), their verdicts, tests and equivalents
    together. Every mutant name must come from one copy only."""
    mutate, _ = AREAS[area]
    verdicts, tests, equivalent, stale = {}, [], {}, []
    for copy in copies:
        part = _statuses(copy)
        overlap = sorted(set(part) & set(verdicts))
        if overlap:
            raise SystemExit(f"{copy} measured mutants another copy measured too (e.g. {overlap[0]}): not parts")
        verdicts.update(part)
        pyproject = (copy / "pyproject.toml").read_text()
        selection = json.loads(re.search(r"pytest_add_cli_args_test_selection = (\[.*\])", pyproject).group(1))
        tests += [t for t in selection if t not in tests]
        valid, old = _equivalents(copy)
        equivalent.update(valid)
        stale += [name for name in old if name in part]
    entry = _summary(area, mutate, tests, verdicts, float("nan"), max_children, (equivalent, stale))
    if len(copies) > 1:
        entry["command"] = ("the parts of the area measured apart, each with nice -n 10 python "
                            "benchmarks/mutation_score.py --area PART --keep (then --retest), scored together with "
                            f"--area {area} " + " ".join("--read <kept copy of a part>" for _ in copies))
    return entry


def measure(area: str, max_children: int, keep: bool, read: list[Path] | None = None) -> dict:
    mutate, tests = AREAS[area]
    tests = [t for t in tests if (ROOT / t.split("::")[0]).exists()]
    if read:  # the verdicts of earlier runs' kept copies, not a new run
        return _read(area, read, max_children)
    commit = _commit()  # of the code copied now, not of whatever is checked out when the run ends
    scratch = Path(tempfile.mkdtemp(prefix="harness-mutmut-"))
    try:
        for rel in _tracked_files() + [t.split("::")[0] for t in tests if t.split("::")[0] not in _tracked_files()]:
            source = ROOT / rel
            if source.is_file():
                (scratch / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, scratch / rel)
        pyproject = scratch / "pyproject.toml"
        pyproject.write_text(_narrowed_pyproject(pyproject.read_text(), mutate, tests))
        env = dict(os.environ)
        env.pop("PYTHONPATH", None)  # mutmut puts its mutated copy first on the path itself
        # the numpy reference path: the compiled module is not what these areas are, and a build per
        # mutant would cost minutes
        env.update(HARNESS_COMPILED="0", MPLBACKEND="Agg", PYTHONHASHSEED="0", HARNESS_HYPOTHESIS_PROFILE="mutation",
                   HARNESS_MUTATION_FIRST=_first(tests))
        command = ["mutmut", "run", "--max-children", str(max_children)]
        started = time.monotonic()
        proc = subprocess.run(command, cwd=scratch, env=env, capture_output=True, text=True)
        seconds = time.monotonic() - started
        verdicts = _statuses(scratch)
        if not verdicts:
            tail = (proc.stdout + proc.stderr)[-3000:]
            raise SystemExit(f"mutmut produced no verdicts for {area} (exit {proc.returncode}):\n{tail}")
        equivalents = _equivalents(scratch)
    finally:
        if keep:
            print(f"scratch copy kept in {scratch}")
        else:
            shutil.rmtree(scratch, ignore_errors=True)
    return _summary(area, mutate, tests, verdicts, seconds, max_children, equivalents, commit)


def retest(area: str, max_children: int, scratch: Path) -> dict:
    """Re-run the mutants an earlier run (its copy kept with --keep) did not kill or did not get to
    (an interrupted run), with the repository's current tests.

    Tests are only ever added between the two runs, so a mutant killed then is still killed; the
    mutated files must be unchanged (checked byte for byte), or the earlier verdicts would be of
    other code. mutmut finds the new tests, maps them to the functions they call, and runs every
    test of each named mutant's function again.
    """
    mutate, tests = AREAS[area]
    tests = [t for t in tests if (ROOT / t.split("::")[0]).exists()]
    for rel in _tracked_files():
        mutated = any(Path(rel).match(pattern) for pattern in mutate)
        if mutated and (scratch / rel).read_bytes() != (ROOT / rel).read_bytes():
            raise SystemExit(f"{rel} differs from the copy in {scratch}: measure the area again instead")
    shutil.copytree(ROOT / "tests", scratch / "tests", dirs_exist_ok=True)
    (scratch / "pyproject.toml").write_text(_narrowed_pyproject((ROOT / "pyproject.toml").read_text(), mutate, tests))
    earlier = _statuses(scratch)
    # the mutants not killed, and those an interrupted run did not get to; a survivor listed as equivalent
    # (and still the mutant described) cannot be killed by any test and is not run again
    equivalent, _ = _equivalents(scratch)
    again = sorted(name for name, verdict in earlier.items()
                   if verdict in ("survived", "timeout", "no tests", "suspicious", "not checked")
                   and not (verdict == "survived" and name in equivalent))
    # mutmut rewrites its records with only the named mutants' verdicts: keep the others' to put back
    records = {meta: json.loads(meta.read_text()) for meta in (scratch / "mutants").rglob("*.meta")}
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    env.update(HARNESS_COMPILED="0", MPLBACKEND="Agg", PYTHONHASHSEED="0", HARNESS_HYPOTHESIS_PROFILE="mutation",
               HARNESS_MUTATION_FIRST=_first(tests))
    started = time.monotonic()
    proc = subprocess.run(["mutmut", "run", "--max-children", str(max_children), *again], cwd=scratch, env=env,
                          capture_output=True, text=True)
    seconds = time.monotonic() - started
    for meta, before in records.items():
        record = json.loads(meta.read_text())
        codes = record.get("exit_code_by_key", {})
        for name, code in before.get("exit_code_by_key", {}).items():
            if codes.get(name) is None:  # not re-run (or the re-run did not get to it): as before
                codes[name] = code
        record["exit_code_by_key"] = codes
        meta.write_text(json.dumps(record))
    verdicts = _statuses(scratch)
    if proc.returncode != 0 or not (scratch / "mutants" / "mutmut-stats.json").exists():
        tail = (proc.stdout + proc.stderr)[-3000:]
        raise SystemExit(f"mutmut did not re-run every survivor of {area} (exit {proc.returncode}):\n{tail}")
    entry = _summary(area, mutate, tests, verdicts, seconds, max_children, _equivalents(scratch))
    entry["command"] = (f"nice -n 10 python benchmarks/mutation_score.py --area {area} --max-children {max_children} "
                        f"--keep, then --area {area} --retest <the kept copy> (re-runs the {len(again)} mutants "
                        "not killed or not checked, with the tests added since)")
    return entry


def _summary(area, mutate, tests, verdicts, seconds, max_children, equivalents_checked, commit=None) -> dict:
    equivalent, stale = equivalents_checked
    counts = {name: 0 for name in STATUS_NAMES}
    survivors, equivalents = [], []
    for name, verdict in sorted(verdicts.items()):
        if verdict == "survived" and name in equivalent:
            equivalents.append(name)
            continue
        counts[verdict] = counts.get(verdict, 0) + 1
        if verdict in ("survived", "timeout", "no tests", "suspicious"):
            survivors.append({"mutant": name, "verdict": verdict})
    counts = {k: v for k, v in counts.items() if v or k in ("killed", "survived", "timeout", "no tests")}
    counts["equivalent"] = len(equivalents)
    # only killed mutants count as caught; equivalent and unchecked ones are out of the denominator
    total = sum(v for k, v in counts.items() if k not in ("equivalent", "skipped", "not checked"))
    killed = counts.get("killed", 0) + counts.get("caught by type check", 0)
    return {
        "area": area,
        "mutated": list(mutate),
        "tests": tests,
        "counts": counts,
        "non_equivalent": total,
        "score": round(killed / total, 4) if total else None,
        "survivors": survivors,
        "equivalent": [{"mutant": name, "reason": equivalent[name]} for name in equivalents],
        # listed as equivalent, but the mutant of that name is no longer the one described: counted as
        # whatever mutmut says it is, and to be re-examined
        "stale_equivalents": [name for name in stale if name in verdicts],
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": commit or _commit(),
        "command": f"nice -n 10 python benchmarks/mutation_score.py --area {area} --max-children {max_children}",
        "cpu": _cpu(),
        "seconds": None if seconds != seconds else round(seconds),
        "tool": "mutmut " + _mutmut_version(),
    }


def _mutmut_version() -> str:
    from importlib.metadata import version

    return version("mutmut")


def _write(results_path: Path, entry: dict) -> None:
    from harness._io import write_json

    results = json.loads(results_path.read_text()) if results_path.exists() else {"areas": {}}
    results["areas"][entry["area"]] = entry
    results["areas"] = dict(sorted(results["areas"].items()))
    results_path.parent.mkdir(parents=True, exist_ok=True)
    write_json(results_path, results)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--area", action="append", choices=sorted(AREAS), help="area to measure (repeatable)")
    parser.add_argument("--max-children", type=int, default=1, help="mutmut's worker processes (default 1)")
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--keep", action="store_true", help="keep the scratch copy (to inspect with mutmut show)")
    parser.add_argument("--read", type=Path, action="append",
                        help="score the kept copy DIR of an earlier run (with --area); repeated, the copies of "
                             "runs of the area's parts (disjoint files), scored together")
    parser.add_argument("--retest", type=Path, help="re-run the mutants the kept copy DIR did not kill, with the "
                        "current tests, and score it (with --area)")
    parser.add_argument("--list", action="store_true", help="list the areas, their files and tests")
    args = parser.parse_args(argv)
    if args.list:
        for area, (mutate, tests) in AREAS.items():
            print(f"{area}: mutates {', '.join(mutate)}; tests {', '.join(tests)}")
        return 0
    for area in args.area or list(AREAS):
        if args.retest is not None:
            entry = retest(area, args.max_children, args.retest)
        else:
            entry = measure(area, args.max_children, args.keep, args.read)
        _write(args.results, entry)
        c = entry["counts"]
        print(f"{area}: {c.get('killed', 0)} of {entry['non_equivalent']} non-equivalent mutants killed "
              f"({100 * (entry['score'] or 0):.1f} %), {c.get('survived', 0)} survived, "
              f"{c.get('timeout', 0)} timeout, {c.get('no tests', 0)} without tests, {c['equivalent']} equivalent "
              f"[{entry['seconds']} s]")
        for survivor in entry["survivors"]:
            print(f"  {survivor['verdict']}: {survivor['mutant']}")
        for name in entry["stale_equivalents"]:
            print(f"  listed as equivalent but changed since (re-examine): {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
