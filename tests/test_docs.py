"""The documentation: it builds in strict mode, every page is reachable, every public name is
documented, and every measured figure it states comes from a shipped results file.

The site build needs the `docs` extra (`pip install -e ".[docs]"`); without it that test skips,
unless HARNESS_REQUIRE_DOCS=1 (set by .ci/run) makes it fail.
"""

import importlib
import importlib.util
import inspect
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import harness
from harness.reproduce import TUTORIAL_LOGLIK, course_comparison

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


def _generator():
    spec = importlib.util.spec_from_file_location("docs_figures", ROOT / "tools" / "docs_figures.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["docs_figures"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


figures = _generator()


def _need(module: str):
    if os.environ.get("HARNESS_REQUIRE_DOCS") == "1":
        return importlib.import_module(module)
    return pytest.importorskip(module, reason='needs the docs extra (pip install -e ".[docs]")')


# ------------------------------------------------------------------------------------------ the site
def test_site_builds_in_strict_mode(tmp_path):
    _need("mkdocs")
    _need("mkdocstrings")
    path = os.pathsep.join(filter(None, (str(ROOT), os.environ.get("PYTHONPATH"))))  # the repository first
    env = dict(os.environ, PYTHONPATH=path, NO_MKDOCS_2_WARNING="1", MPLBACKEND="Agg")
    out = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-d", str(tmp_path / "site")],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    api = (tmp_path / "site" / "api" / "index.html").read_text(encoding="utf-8")
    for name in harness.__all__:  # each under its public name, from its docstring
        assert f"harness.{name}" in api, name


def _nav_pages(nav) -> list[str]:
    pages = []
    for item in nav:
        value = next(iter(item.values())) if isinstance(item, dict) else item
        pages += _nav_pages(value) if isinstance(value, list) else [value]
    return pages


def test_every_page_is_in_the_nav_and_linked_from_the_index():
    yaml = _need("yaml")
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))
    nav = _nav_pages(config["nav"])
    pages = sorted(str(p.relative_to(DOCS)) for p in DOCS.rglob("*.md"))
    assert sorted(nav) == pages, "every page of docs/ in mkdocs.yml's nav, and nothing else"
    index = (DOCS / "index.md").read_text(encoding="utf-8")
    linked = set(re.findall(r"\]\(([^)#]+\.md)", index))
    assert set(pages) - {"index.md"} <= linked, f"not linked from docs/index.md: {set(pages) - linked - {'index.md'}}"


def _api_entries() -> list[tuple[str, object]]:
    """(path, object) of every `::: path` of the API reference, resolved by importing it."""
    entries = []
    for path in re.findall(r"^::: (\S+)$", (DOCS / "api.md").read_text(encoding="utf-8"), re.M):
        module, _, attribute = path.rpartition(".")
        entries.append((path, getattr(importlib.import_module(module), attribute)))
    return entries


@pytest.mark.parametrize("name", harness.__all__)
def test_every_public_name_has_a_docstring_and_an_api_entry(name):
    obj = getattr(harness, name)
    paths = [path for path, o in _api_entries() if o is obj]
    assert paths, (f"harness.{name} is not in docs/api.md: add '::: {getattr(obj, '__module__', 'harness')}.{name}' "
                   f"with 'heading: harness.{name}'")
    if inspect.isclass(obj) or inspect.isroutine(obj):
        doc = obj.__doc__ or ""
        # a dataclass without a docstring gets its signature as __doc__: that is not documentation
        assert doc.strip() and not doc.startswith(f"{name}("), f"harness.{name} has no docstring"
    else:
        # a constant's docstring is the string literal after its assignment, which only the source holds
        griffe = _need("griffe")
        module, _, attribute = paths[0].rpartition(".")
        loaded = griffe.load(module, search_paths=[str(ROOT)])[attribute]
        assert loaded.docstring is not None and loaded.docstring.value.strip(), f"harness.{name} has no docstring"


# ------------------------------------------------------------------------------- numbers from files
def test_every_generated_block_is_current():
    assert figures.stale_pages() == [], "run python tools/docs_figures.py"


def test_no_page_states_a_figure_that_no_file_backs():
    found = [(str(p.relative_to(ROOT)), line, figure) for p in figures.pages()
             for line, figure in figures.unbacked_figures(p.read_text(encoding="utf-8"))]
    assert found == [], "measured figures outside generated blocks (docs/contributing.md, 'Figures')"


def test_readme_is_short():
    assert (ROOT / "README.md").stat().st_size <= 10_000


@pytest.mark.parametrize("text", [
    "The whole run takes 3.7 s here.", "a peak of 56.6 MB", "5.2x faster than the baseline", "up to 20× apart",
    "17 of 17 faults survived", "1079 pass and 79 skip", "about 2 min 51 s", "a 12% drop", "at 49.0 GFLOP/s",
])
def test_the_figure_rule_catches_a_stated_measurement(text):
    assert figures.unbacked_figures(f"# Page\n\n{text}\n")


@pytest.mark.parametrize("text", [
    "MLP 2-3-2, B = 500, t1 = 10, rtol 1e-6", "within 10x rtol of the reference", "DP5 and RadauIIA5",
    "`--timeout 900 s` in code", "```\nreal 3.7 s\n```", "<!-- 5 s in a comment -->", "float64 on x86_64",
    "<!-- generated\nkind = \"text\"\n-->\ntook 3.7 s\n<!-- end generated -->",
])
def test_the_figure_rule_leaves_settings_code_and_generated_blocks_alone(text):
    assert figures.unbacked_figures(f"# Page\n\n{text}\n") == []


def _copy_reports(tmp_path) -> Path:
    shutil.copytree(ROOT / "reports", tmp_path / "reports", ignore=shutil.ignore_patterns("*.png"))
    return tmp_path


def test_changing_a_number_in_a_results_file_changes_the_generated_page(tmp_path):
    page = (DOCS / "benchmarks.md").read_text(encoding="utf-8")
    root = _copy_reports(tmp_path)
    path = root / "reports" / "training" / "results.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    assert figures.render_page(page, root) == page  # the copy gives the shipped page
    old = data["results"]["harness compiled"]["training"]
    data["results"]["harness compiled"]["training"] = 123.456
    path.write_text(json.dumps(data), encoding="utf-8")
    changed = figures.render_page(page, root)
    assert changed != page
    assert "| harness compiled | 123 s |" in changed
    assert f"| harness compiled | {old:.3g} s |" in page and f"| harness compiled | {old:.3g} s |" not in changed


def test_a_file_without_machine_date_or_commit_says_so(tmp_path):
    (tmp_path / "r.json").write_text(json.dumps({"x": {"a": {"t": 0.5}}}), encoding="utf-8")
    block = ('kind = "table"\nsource = "r.json"\nrows = "/x"\nlabel = "row"\n'
             'columns = [{ header = "t", key = "/t", unit = "s" }]\n')
    text = figures.render_block(block, tmp_path)
    assert "| a | 0.5 s |" in text
    assert "CPU model not recorded in the file" in text
    assert "date not recorded in the file; commit not recorded in the file" in text


def test_provenance_is_read_from_the_file(tmp_path):
    (tmp_path / "r.json").write_text(json.dumps({
        "cpu": "Some CPU (AVX2, no AVX-512)", "v": 2.0,
        "provenance": {"created": "2026-01-02T03:04:05+00:00", "git_commit": "0123456789abcdef"}}))
    text = figures.render_block('kind = "text"\nsource = "r.json"\ntemplate = "v is {v}"\n'
                                'values.v = { key = "/v", format = "{:.1f}", unit = "x" }\n', tmp_path)
    assert text.startswith("v is 2.0 x\n")
    assert "CPU Some CPU, AVX-512 no; date 2026-01-02T03:04:05+00:00; commit `0123456789ab`" in text


def test_a_block_naming_a_missing_key_is_an_error(tmp_path):
    (tmp_path / "r.json").write_text("{}")
    with pytest.raises(figures.BlockError, match="/nothing"):
        figures.render_block('kind = "text"\nsource = "r.json"\ntemplate = "{v}"\nvalues.v = { key = "/nothing" }\n',
                             tmp_path)


# --------------------------------------------------------------- the seed report says what it shows
def test_the_seed_report_states_how_far_its_run_is_from_the_tutorials():
    history = json.loads((ROOT / "reports" / "seed" / "history.json").read_text(encoding="utf-8"))
    sentence = course_comparison(history["history"], TUTORIAL_LOGLIK, history["perfect_loglik_per_datapoint"])
    report = (ROOT / "reports" / "seed" / "report.md").read_text(encoding="utf-8")
    assert sentence in report
    assert "follow the same course, not the same digits" not in report
    # recomputed here: the largest ratio of the distances to the perfect fit, either way
    perfect = history["perfect_loglik_per_datapoint"]
    ratios = [max(g, 1 / g) for g in ((perfect - r["loglik_per_datapoint"]) / (perfect - TUTORIAL_LOGLIK[r["step"]])
                                      for r in history["history"] if r["step"] in TUTORIAL_LOGLIK)]
    assert f"{max(ratios):.1f} times apart" in sentence
    assert max(ratios) > 2 and "do not follow the same course" in sentence


def test_two_runs_on_the_same_course_are_said_to_be():
    reference = {0: -300.0, 50: -10.0, 100: -2.0}
    perfect = -1.8
    history = [{"step": s, "loglik_per_datapoint": perfect - 1.5 * (perfect - v)} for s, v in reference.items()]
    sentence = course_comparison(history, reference, perfect)
    assert "within 2 times of each other" in sentence and "1.5 times apart" in sentence


def test_rows_can_be_filtered_and_counted(tmp_path):
    (tmp_path / "r.json").write_text(json.dumps({"rows": [
        {"role": "speed", "name": "a", "t": [1.0], "ours": 1.0, "theirs": 4.0},
        {"role": "speed", "name": "b", "ours": 3.0, "theirs": 4.0, "other": 2.0},
        {"role": "memory", "name": "c", "ours": 9.0, "theirs": 1.0}]}))
    table = figures.render_block(
        'kind = "table"\nsource = "r.json"\nrows = "/rows"\nwhere = { role = "speed" }\n'
        'columns = [{ header = "name", key = "/name", format = "{}" },'
        ' { header = "best ÷ theirs", key = ["/ours", "/other"], divide_by = "/theirs", format = "{:.2f}" }]\n',
        tmp_path)
    assert "| a | 0.25 |" in table and "| b | 0.50 |" in table and "| c |" not in table
    text = figures.render_block(
        'kind = "text"\nsource = "r.json"\ntemplate = "{n} of {m}: {which}"\n'
        'values.n = { rows = "/rows", key = "/ours", divide_by = "/theirs", aggregate = "count", at_most = 0.5 }\n'
        'values.m = { rows = "/rows", key = "/ours", divide_by = "/theirs", aggregate = "count" }\n'
        'values.which = { rows = "/rows", key = "/ours", divide_by = "/theirs", aggregate = "labels", above = 0.5 }\n',
        tmp_path)
    assert text.startswith("1 of 3: 1; 2\n")  # list rows are labelled by their index
