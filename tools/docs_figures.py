"""Fill the measured figures of README.md and docs/ from the shipped results files.

A page never types a measured figure by hand: it declares a *generated block*, and this script
writes the block's content from a results file (``reports/**/results.json``, ``history.json``, a
benchmark's output), followed by one line naming the file, the machine (CPU, and whether it has
AVX-512), the date and the commit that produced it, as the file records them (or saying that the
file does not record them). A block is an HTML comment holding a TOML specification, the generated
text, and an end marker::

    <!-- generated
    kind = "table"
    source = "reports/training/results.json"
    rows = "/results"
    label = "framework"
    columns = [
      { header = "training", key = "/training", format = "{:.2f}", unit = "s" },
    ]
    -->
    (written by this script)
    <!-- end generated -->

Keys inside a file are JSON pointers (RFC 6901: ``/results/harness compiled/training``; ``~1``
stands for ``/`` inside a key). The kinds:

- ``table``: one row per entry of the dict or list at ``rows`` (``select`` picks and orders dict
  keys), one column per entry of ``columns``: ``key`` (a pointer into the row; ``"@"`` is the row's
  own key), ``format`` (a ``str.format`` field, default ``{:.4g}``), ``unit`` (appended),
  ``scale`` (a factor, e.g. 1000 for seconds to milliseconds) and ``divide_by`` (a second pointer
  into the row: the column shows the ratio) or ``relative_to_row`` (another row's key: the column
  shows this row's value over that row's).
  ``where`` keeps the rows whose fields equal the given values (``where = { role = "memory" }``).
  ``key`` and ``divide_by`` may be lists of pointers: the smallest value present is used (the
  fastest of several engines).
- ``text``: a ``template`` with ``{name}`` fields, each a ``values.name`` table with ``key`` and
  the same ``format``/``unit``/``scale``/``divide_by``; or a figure over rows: ``rows``,
  ``select``/``where`` as for a table, ``key``, and ``aggregate`` = ``count``, ``min``, ``max`` or
  ``labels`` (which rows), of the values ``at_most`` / ``above`` a threshold when given.
- ``claims``: the evaluated claims of every file matching ``sources`` (a glob), one row per file;
  ``evidence = true`` adds the numbers that decide each claim.
- ``excerpt``: the lines of a generated text file (a ``report.md``) from the first line matching
  the regular expression ``start`` up to, not including, the first later line matching ``end``;
  ``metadata`` names the JSON file whose provenance the excerpt carries.

Every kind accepts ``command`` (how to regenerate the source, shown in the provenance line) and
``cpu_key``/``date_key``/``commit_key`` (pointers, where a file keeps its provenance elsewhere).

    python tools/docs_figures.py            # rewrite every generated block in README.md and docs/
    python tools/docs_figures.py --check    # exit status 1 and the stale files if any block differs

``tests/test_docs.py`` runs the check, so a results file regenerated without its pages fails the
suite.
"""

from __future__ import annotations

import argparse
import glob
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the tomli backport is a dependency there
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
BEGIN = "<!-- generated"
END = "<!-- end generated -->"
BLOCK = re.compile(r"(<!-- generated\n)(.*?)(\n-->\n)(.*?)(<!-- end generated -->)", re.S)
FENCE = re.compile(r"(^```.*?^```[^\n]*$)", re.S | re.M)
NOT_RECORDED = "not recorded in the file"

# Where the results files of this project keep their provenance, most specific first. A file that
# records it elsewhere names the place in its block (cpu_key, date_key, commit_key).
CPU_KEYS = ("/provenance/machine/cpu", "/provenance/cpu", "/machine/cpu", "/cpu")
DATE_KEYS = ("/provenance/created", "/created", "/date")
COMMIT_KEYS = ("/provenance/git_commit", "/git_commit", "/commit")
PLATFORM_KEYS = ("/provenance/machine/processor", "/machine/processor")


class BlockError(ValueError):
    """A generated block's specification is wrong, or names something its file does not hold."""


def pages(root: Path = ROOT) -> list[Path]:
    """Every page that may hold generated blocks: README.md and docs/**/*.md."""
    return [root / "README.md", *sorted((root / "docs").rglob("*.md"))]


# ------------------------------------------------------------------------------------------ reading
def lookup(data, pointer: str):
    """The value at a JSON pointer ("" is the whole document); KeyError naming the missing part."""
    if pointer in ("", "/"):
        return data
    if not pointer.startswith("/"):
        raise BlockError(f"key {pointer!r}: expected a JSON pointer starting with '/'")
    value = data
    for part in pointer[1:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        if isinstance(value, list):
            try:
                value = value[int(part)]
            except (ValueError, IndexError):
                raise KeyError(pointer) from None
        elif isinstance(value, dict) and part in value:
            value = value[part]
        else:
            raise KeyError(pointer)
    return value


def _first(data, keys):
    for key in keys:
        try:
            value = lookup(data, key)
        except KeyError:
            continue
        if value not in (None, ""):
            return value
    return None


def load(root: Path, source: str):
    path = root / source
    if not path.is_file():
        raise BlockError(f"source {source!r}: no such file")
    return json.loads(path.read_text(encoding="utf-8"))


@dataclass(frozen=True)
class Provenance:
    """What a results file says about where its numbers were measured."""

    source: str
    cpu: str
    avx512: str
    date: str
    commit: str

    def line(self, command: str | None) -> str:
        text = (f"<sub>Generated from {self.source}: CPU {self.cpu}, AVX-512 {self.avx512}; "
                f"date {self.date}; commit {self.commit}.")
        if command:
            text += f" Regenerate the file with `{command}`."
        return text + "</sub>"


def provenance(root: Path, source: str, spec: dict | None = None) -> Provenance:
    """The machine, date and commit a results file records, or NOT_RECORDED for each it does not."""
    spec = spec or {}
    data = load(root, source)
    cpu = _first(data, [spec["cpu_key"]] if "cpu_key" in spec else CPU_KEYS)
    if cpu is None:
        platform = _first(data, PLATFORM_KEYS)
        cpu_text = f"model {NOT_RECORDED}" + (f" (platform {platform})" if platform else "")
        avx = NOT_RECORDED
    else:
        cpu_text = str(cpu)
        # harness._provenance.cpu_model writes "(AVX-512)", "(AVX2, no AVX-512)" or "(no AVX2)"
        avx = "no" if "no AVX-512" in cpu_text or "no AVX2" in cpu_text else (
            "yes" if "AVX-512" in cpu_text else NOT_RECORDED)
        cpu_text = re.sub(r"\s*\((AVX-512|AVX2, no AVX-512|no AVX2)\)", "", cpu_text)
    date = _first(data, [spec["date_key"]] if "date_key" in spec else DATE_KEYS)
    commit = _first(data, [spec["commit_key"]] if "commit_key" in spec else COMMIT_KEYS)
    commit_text = NOT_RECORDED if commit is None else f"`{str(commit)[:12]}`" + (
        " (with uncommitted changes)" if str(commit).endswith("+dirty") else "")
    return Provenance(f"`{source}`", cpu_text, avx, NOT_RECORDED if date is None else str(date), commit_text)


# ------------------------------------------------------------------------------------------ writing
def format_value(value, column: dict) -> str:
    """One figure as the page shows it: scaled, formatted, with its unit; 'n/a' when absent."""
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "✓" if value else "✗"
    if isinstance(value, (int, float)):
        value = value * column.get("scale", 1)
        text = column.get("format", "{:.4g}").format(value)
    else:
        text = str(value)
    unit = column.get("unit", "")
    return f"{text} {unit}" if unit else text


def _smallest(record, keys):
    """The value at a pointer, or the smallest number among several pointers' (KeyError if none)."""
    if isinstance(keys, str):
        return lookup(record, keys)
    found = []
    for key in keys:
        try:
            value = lookup(record, key)
        except KeyError:
            continue
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            found.append(value)
    if not found:
        raise KeyError(keys)
    return min(found)


def _value(record, column: dict, key_name=None, rows=None):
    key = column.get("key")
    if key is None:
        raise BlockError(f"column {column}: no key")
    if key == "@":
        return key_name
    try:
        value = _smallest(record, key)
        if "divide_by" in column:
            value = value / _smallest(record, column["divide_by"])
        if "relative_to_row" in column:
            if not isinstance(rows, dict) or column["relative_to_row"] not in rows:
                raise BlockError(f"relative_to_row {column['relative_to_row']!r}: no such row")
            value = value / _smallest(rows[column["relative_to_row"]], key)
    except KeyError:
        return None
    except (TypeError, ZeroDivisionError):
        return None
    return value


def _rows(data, spec: dict, source: str) -> list[tuple]:
    """(label, record) pairs of the dict or list at spec["rows"], picked by `select` and `where`."""
    try:
        rows = lookup(data, spec.get("rows", ""))
    except KeyError:
        raise BlockError(f"rows {spec.get('rows')!r}: not in {source}") from None
    if isinstance(rows, dict):
        keys = spec.get("select", list(rows))
        missing = [k for k in keys if k not in rows]
        if missing:
            raise BlockError(f"select: {missing} not in {source} at {spec.get('rows')!r}")
        items = [(k, rows[k]) for k in keys]
    elif isinstance(rows, list):
        items = list(enumerate(rows))
    else:
        raise BlockError(f"rows {spec.get('rows')!r}: expected a dict or a list in {source}")
    for field, wanted in spec.get("where", {}).items():
        wanted = wanted if isinstance(wanted, list) else [wanted]
        items = [(k, r) for k, r in items if isinstance(r, dict) and r.get(field) in wanted]
    if not items:
        raise BlockError(f"rows {spec.get('rows')!r} of {source}: none selected")
    return items


AGGREGATES = ("count", "min", "max", "labels")


def _aggregate(data, column: dict, source: str):
    """A figure over rows: how many, the smallest, the largest, or which, of the values at or below
    `at_most` / above `above` (when given)."""
    items = _rows(data, column, source)
    rows = lookup(data, column.get("rows", ""))
    values = [(label, _value(record, column, label, rows)) for label, record in items]
    values = [(label, v) for label, v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
    if "at_most" in column:
        values = [(label, v) for label, v in values if v <= column["at_most"]]
    if "above" in column:
        values = [(label, v) for label, v in values if v > column["above"]]
    how = column["aggregate"]
    if how == "count":
        return len(values)
    if how == "labels":
        return "; ".join(str(label) for label, _ in values) or "none"
    if not values:
        return None
    return (min if how == "min" else max)(v for _, v in values)


def _escape(text: str) -> str:
    return str(text).replace("|", "\\|")


def render_table(spec: dict, root: Path) -> tuple[list[str], list[Provenance]]:
    data = load(root, spec["source"])
    items = _rows(data, spec, spec["source"])
    rows = lookup(data, spec.get("rows", ""))
    columns = spec.get("columns")
    if not columns:
        raise BlockError("a table needs columns")
    headers = ([spec["label"]] if "label" in spec else []) + [c["header"] for c in columns]
    align = (["---"] if "label" in spec else []) + ["---" if c.get("key") == "@" else "---:" for c in columns]
    lines = ["| " + " | ".join(_escape(h) for h in headers) + " |", "|" + "|".join(align) + "|"]
    for name, record in items:
        cells = ([_escape(name)] if "label" in spec else [])
        cells += [_escape(format_value(_value(record, c, name, rows), c)) for c in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return lines, [provenance(root, spec["source"], spec)]


def render_text(spec: dict, root: Path) -> tuple[list[str], list[Provenance]]:
    data = load(root, spec["source"])
    values = {}
    for name, column in spec.get("values", {}).items():
        if "aggregate" in column:
            if column["aggregate"] not in AGGREGATES:
                raise BlockError(f"values.{name}: aggregate {column['aggregate']!r}: expected one of {AGGREGATES}")
            value = _aggregate(data, column, spec["source"])
        else:
            value = _value(data, column)
        if value is None:
            raise BlockError(f"values.{name}: {column.get('key')!r} not in {spec['source']}")
        values[name] = format_value(value, column)
    try:
        text = spec["template"].strip().format(**values)
    except KeyError as err:
        raise BlockError(f"template: no value named {err}") from None
    return text.splitlines(), [provenance(root, spec["source"], spec)]


def render_claims(spec: dict, root: Path) -> tuple[list[str], list[Provenance]]:
    sources = sorted(glob.glob(spec["sources"], root_dir=root))
    if not sources:
        raise BlockError(f"sources {spec['sources']!r}: no file matches")
    lines = ["| experiment | checked claims (✓ = holds in the shipped report) |", "|---|---|"]
    for source in sources:
        claims = load(root, source).get("claims", [])
        def evidence(claim):
            return f" ({_escape(claim.get('evidence', 'no evidence recorded'))})" if spec.get("evidence") else ""

        cell = "<br>".join(f"{'✓' if c['holds'] else '✗'} {_escape(c['says'])}{evidence(c)}" for c in claims)
        lines.append(f"| `{Path(source).parent.name}` | {cell or 'no claims declared'} |")
    return lines, [provenance(root, s, spec) for s in sources]


def render_excerpt(spec: dict, root: Path) -> tuple[list[str], list[Provenance]]:
    path = root / spec["source"]
    if not path.is_file():
        raise BlockError(f"source {spec['source']!r}: no such file")
    text = path.read_text(encoding="utf-8").splitlines()
    start = next((i for i, line in enumerate(text) if re.search(spec["start"], line)), None)
    if start is None:
        raise BlockError(f"start {spec['start']!r}: no line of {spec['source']} matches")
    end = next((i for i in range(start + 1, len(text)) if re.search(spec["end"], text[i])), len(text))
    lines = text[start:end]
    while lines and not lines[-1].strip():
        lines.pop()
    return lines, [provenance(root, spec["metadata"], spec)]


KINDS = {"table": render_table, "text": render_text, "claims": render_claims, "excerpt": render_excerpt}


def render_block(spec_text: str, root: Path = ROOT) -> str:
    """The content of one generated block: the figures, a blank line, the provenance line(s)."""
    try:
        spec = tomllib.loads(spec_text)
    except tomllib.TOMLDecodeError as err:
        raise BlockError(f"the block's specification is not TOML: {err}") from None
    kind = spec.get("kind")
    if kind not in KINDS:
        raise BlockError(f"kind {kind!r}: expected one of {sorted(KINDS)}")
    lines, sources = KINDS[kind](spec, root)
    # One provenance line per distinct (machine, date, commit), naming every file that shares it.
    groups: dict[tuple, list[str]] = {}
    for p in sources:
        groups.setdefault((p.cpu, p.avx512, p.date, p.commit), []).append(p.source)
    notes = [Provenance(", ".join(names), *key).line(spec.get("command"))
             for key, names in groups.items()]
    return "\n".join(lines) + "\n\n" + "<br>\n".join(notes) + "\n"


def render_page(text: str, root: Path = ROOT, where: str = "page") -> str:
    """`text` with every generated block rewritten from the files under `root`."""
    def replace(match):
        try:
            body = render_block(match.group(2), root)
        except BlockError as err:
            raise BlockError(f"{where}: {err}") from None
        return match.group(1) + match.group(2) + match.group(3) + body + match.group(5)

    # A block shown as an example inside a fenced code block is text, not a block.
    parts = FENCE.split(text)
    for i in range(0, len(parts), 2):
        if parts[i].count(BEGIN) != parts[i].count(END):
            raise BlockError(f"{where}: '{BEGIN}' and '{END}' do not pair up")
        parts[i] = BLOCK.sub(replace, parts[i])
    return "".join(parts)


def stale_pages(root: Path = ROOT, data_root: Path | None = None) -> list[Path]:
    """The pages whose generated blocks differ from what the results files give."""
    data_root = data_root or root
    return [p for p in pages(root) if p.is_file()
            and render_page(p.read_text(encoding="utf-8"), data_root, str(p.relative_to(root)))
            != p.read_text(encoding="utf-8")]


# ------------------------------------------------------------------------------ the figure rule
# A measured figure is a number with a unit of time, memory or speed, a ratio (x, ×), a percentage,
# or a count of outcomes ("17 of 17", "1079 pass"). Outside generated blocks, code and HTML comments
# a page may not state one (docs/contributing.md, "Figures"). Numbers without such a unit are
# settings and shapes (B = 500, rtol 1e-6, MLP 2-3-2) and are free; a bound in units of a tolerance
# ("within 10x rtol") is a declared bound, not a measurement, and is free too.
NUMBER = r"(?<![\w.\-])\d+(?:[.,]\d+)*(?:e[-+]?\d+)?"
MEASURED = re.compile(
    NUMBER + r"(?:"
    r"\s?(?:ns|µs|us|ms|s|sec|secs|seconds?|min|mins|minutes?|h|hours?)\b"       # time
    r"|\s?(?:[kKMG]i?B|bytes?)\b"                                                # memory
    r"|\s?(?:GFLOP/s|M/s|k/s)"                                                   # speed
    r"|\s?(?:x|×)(?!\s?(?:rtol|atol|the\s+tolerance))(?![\w])"                   # ratio
    r"|\s?%"                                                                     # percentage
    r"|\s+of\s+\d+\b"                                                            # count: 17 of 17
    r"|\s+(?:pass|passed|fail|failed|skip|skipped|caught|survived|survive)\b"    # count of outcomes
    r")"
)
EXEMPT = re.compile(r"<!-- generated\n.*?<!-- end generated -->|<!--.*?-->|```.*?```|`[^`\n]*`", re.S)


def unbacked_figures(text: str) -> list[tuple[int, str]]:
    """(line number, figure) for every measured figure stated outside generated blocks and code."""
    def blank(match):  # keep the line numbers
        return "\n" * match.group(0).count("\n")

    kept = EXEMPT.sub(blank, text)
    return [(kept.count("\n", 0, m.start()) + 1, m.group(0)) for m in MEASURED.finditer(kept)]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if a page is stale")
    args = parser.parse_args(argv)
    try:
        stale = stale_pages()
    except BlockError as err:
        print(f"docs_figures: {err}", file=sys.stderr)
        return 2
    unbacked = [(page, line, figure) for page in pages() if page.is_file()
                for line, figure in unbacked_figures(page.read_text(encoding="utf-8"))]
    for page, line, figure in unbacked:
        print(f"{page.relative_to(ROOT)}:{line}: {figure!r} is a measured figure outside a generated block",
              file=sys.stderr)
    if args.check:
        if unbacked:
            return 1
        for page in stale:
            print(f"stale: {page.relative_to(ROOT)} (run python tools/docs_figures.py)")
        return 1 if stale else 0
    for page in stale:
        page.write_text(render_page(page.read_text(encoding="utf-8")), encoding="utf-8")
        print(f"rewrote {page.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
