"""Claims: the findings an experiment expects, declared in its file and checked against its results.

A claim is data, never code: a sentence (`says`) and one predicate from a small vocabulary, evaluated
over the experiment's result rows (one row per engine x solver x tolerance x seed cell, with its
`status` and metrics such as `dtheta.relative_error`, `n_rhs`, `seconds`). The report prints each
claim with ✓ or ✗ and the numbers that decide it; a claim that fails is news, shown first, and
`harness compare` exits with its own status so that scripts can gate on findings.

    [[claims]]                      # every row in scope meets a condition (also: `any`, `none`)
    says = "BacksolveAdjoint fails or is flagged on every stiff cell"
    every = { engine = "BacksolveAdjoint", backend = "harness" }
    status = ["failed", "flagged"]

    [[claims]]                      # a metric bound, optionally in units of the row's rtol or atol
    says = "every adjoint is within 100x rtol of the reference at rtol <= 1e-6"
    every = { backend = "harness", rtol = { at_most = 1e-6 } }
    status = "ok"
    metric = "dtheta.relative_error"
    per = "rtol"
    at_most = 100
    covers = ["engine", "rtol"]     # fails unless the rows counted hold every engine and rtol in scope

    [[claims]]                      # a metric that moves one way along another, in every group
    says = "the error falls strictly with the tolerance for every engine and seed"
    monotone = "dtheta.relative_error"
    over = "rtol"
    direction = "increasing"        # the metric grows with rtol
    strict = true                   # the default; `false` allows equal neighbours
    group_by = ["engine", "solver", "seed"]

    [[claims]]                      # a ratio between two selections, paired row by row
    says = "DP5 costs at least 10x the evaluations of RadauIIA5"
    ratio = "n_rhs"
    numerator = { solver = "DP5" }
    denominator = { solver = "RadauIIA5" }
    pair_by = ["engine", "rtol", "seed"]
    at_least = 10

A selection maps a row field to a value (equality), a list (membership) or a range
`{ at_most = x, at_least = y }`; the rows it matches are the claim's *scope*. What no selection can
do is hide a row of the scope:

- `status` inside a selection is a condition, not a filter: a failed row in scope breaks an `every`
  (and a `none`, a `monotone`, a `ratio`) claim. A claim that means to leave failures out says so,
  `excluding = ["failed"]`: the excluded rows are counted and named in the evidence, and the claim's
  line in the report carries "excluding N failed". Rows of engines that cannot run on this machine
  (status "unavailable") are never evidence either way; they are counted in the evidence.
- A metric that is missing or not a finite number never satisfies anything: such a row breaks
  `every`, `none`, `monotone` and `ratio` claims and is no witness for `any`.
- `monotone` is strict unless `strict = false`; a group with fewer than two points, or two points at
  the same x, breaks it (say which field tells them apart with `group_by`).
- `ratio` pairs rows that agree on `pair_by`; a row without a partner, a row on both sides, or a
  zero or missing denominator breaks it.
- `covers = [field, ...]`: the rows counted must hold every value of each field that the grid has
  in the claim's scope ("at every tolerance" is then checked, not assumed).
- An empty scope fails the claim; a selection that no row of the experiment can match, or a field,
  metric, status or `pair_by` the rows do not have, is refused when the file is read.

Every bound's evidence ends with its margin, observed against bound; a claim whose bound is more
than `LOOSE` times looser than what was observed is marked *loose* in the report.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass, field

from ..errors import HarnessInputError

QUANTIFIERS = ("every", "any", "none")
FORMS = (*QUANTIFIERS, "monotone", "ratio")
STATUSES = ("ok", "flagged", "failed", "unavailable")  # as `_cells.STATUSES`
EXCLUDABLE = ("failed", "flagged")
LOOSE = 10.0  # a bound more than this factor looser than the observed value is reported as loose
_RANGE_KEYS = {"at_most", "at_least"}
_COMMON_KEYS = {"says", "excluding", "covers"}
_KEYS = {
    "every": {"status", "metric", "per", "at_most", "at_least"},
    "monotone": {"over", "direction", "among", "group_by", "strict"},
    "ratio": {"numerator", "denominator", "pair_by", "at_most", "at_least"},
}
_KEYS["any"] = _KEYS["none"] = _KEYS["every"]


@dataclass(frozen=True)
class Claim:
    """One declared finding: the sentence and its predicate (the claim's TOML table, validated)."""

    says: str
    form: str  # one of FORMS
    spec: dict = field(hash=False, compare=False)

    def as_dict(self) -> dict:
        return {"says": self.says, "form": self.form, **self.spec}

    @property
    def excluding(self) -> tuple[str, ...]:
        return tuple(_as_list(self.spec.get("excluding", [])))

    def selections(self) -> dict[str, dict]:
        """The claim's selections by key (`every`, `among`, `numerator`, ...)."""
        keys = {"monotone": ("among",), "ratio": ("numerator", "denominator")}.get(self.form, (self.form,))
        return {k: self.spec.get(k, {}) for k in keys}


@dataclass(frozen=True)
class ClaimResult:
    """A claim evaluated: whether it holds, the numbers that decide it, and its margin.

    `margin` is how far the observed extreme sits inside (> 1) or outside (< 1) the bound, as a
    factor (None where the claim has no numeric bound); `loose` is margin > LOOSE. `excluded` counts
    the rows the claim's `excluding` left out, by status.
    """

    says: str
    holds: bool
    evidence: str
    n_rows: int
    margin: float | None = None
    loose: bool = False
    excluded: dict = field(default_factory=dict, hash=False, compare=False)

    def as_dict(self) -> dict:
        return {"says": self.says, "holds": self.holds, "evidence": self.evidence, "n_rows": self.n_rows,
                "margin": self.margin, "loose": self.loose, "excluded": dict(self.excluded)}

    def line(self) -> str:
        excluded = "".join(f" [excluding {n} {status}]" for status, n in self.excluded.items() if n)
        loose = f" — *loose*: the bound is {self.margin:.3g}x the observed value" if self.loose else ""
        return f"{'✓' if self.holds else '✗'} {self.says}{excluded} ({self.evidence}){loose}"


# ---------------------------------------------------------------------------------------- parsing
def parse_claims(tables, where: str = "claims", fields: dict | None = None) -> tuple[Claim, ...]:
    """Validate the `[[claims]]` tables of an experiment file; one HarnessInputError per mistake.

    `fields` (kind -> {field name: its possible values, or None for any value}, from each used
    kind's `claim_fields`) lets every name a claim uses be checked: a field, metric, status or
    `pair_by` the rows do not have, or a selection no row can match, is refused here.
    """
    if tables is None:
        return ()
    if not isinstance(tables, list):
        raise HarnessInputError(f"{where}: expected an array of tables ([[claims]]), got {tables!r}")
    claims = tuple(_parse_claim(table, f"{where}[{i}]") for i, table in enumerate(tables))
    if fields is not None:
        for i, claim in enumerate(claims):
            check_names(claim, fields, f"{where}[{i}]")
    return claims


def _as_list(value) -> list:
    return value if isinstance(value, list) else [value]


def _parse_claim(table, where: str) -> Claim:
    if not isinstance(table, dict):
        raise HarnessInputError(f"{where}: expected a table, got {table!r}")
    says = table.get("says")
    if not isinstance(says, str) or not says.strip():
        raise HarnessInputError(f"{where}.says: expected the sentence the claim makes, got {says!r}")
    forms = [name for name in FORMS if name in table]
    if len(forms) != 1:
        raise HarnessInputError(
            f"{where} ({says!r}): expected exactly one of {list(FORMS)}, got {forms or 'none'}"
        )
    form = forms[0]
    allowed = _COMMON_KEYS | {form} | _KEYS[form]
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise HarnessInputError(f"{where} ({says!r}): unknown keys {unknown}; a {form!r} claim takes {sorted(allowed)}")
    spec = {k: v for k, v in table.items() if k != "says"}
    if "excluding" in spec:
        excluding = _as_list(spec["excluding"])
        if not excluding or any(s not in EXCLUDABLE for s in excluding):
            raise HarnessInputError(
                f"{where}.excluding = {spec['excluding']!r}: expected one or both of {list(EXCLUDABLE)}")
    if "covers" in spec:
        _check_group(spec["covers"], f"{where}.covers")
        if not spec["covers"]:
            raise HarnessInputError(f"{where}.covers = []: expected the fields whose every value is covered")
    if form in QUANTIFIERS:
        _check_selection(spec[form], f"{where}.{form}")
        if "status" not in spec and "metric" not in spec:
            raise HarnessInputError(f"{where} ({says!r}): a {form!r} claim needs `status` or `metric`")
        if "metric" in spec:
            _check_name(spec["metric"], f"{where}.metric")
            _check_bounds(spec, where, says)
        elif "per" in spec or _RANGE_KEYS & set(spec):
            raise HarnessInputError(f"{where} ({says!r}): `per`, `at_most` and `at_least` go with `metric`")
        if "per" in spec and spec["per"] not in ("rtol", "atol"):
            raise HarnessInputError(f"{where}.per = {spec['per']!r}: expected 'rtol' or 'atol'")
        if "status" in spec:
            _check_statuses(spec["status"], f"{where}.status")
    elif form == "monotone":
        _check_name(spec["monotone"], f"{where}.monotone")
        _check_name(spec.get("over"), f"{where}.over")
        if spec.get("direction") not in ("increasing", "decreasing"):
            raise HarnessInputError(
                f"{where}.direction = {spec.get('direction')!r}: expected 'increasing' or 'decreasing'"
            )
        _check_selection(spec.get("among", {}), f"{where}.among")
        _check_group(spec.get("group_by", []), f"{where}.group_by")
        if not isinstance(spec.get("strict", True), bool):
            raise HarnessInputError(f"{where}.strict = {spec['strict']!r}: expected true or false")
    else:
        _check_name(spec["ratio"], f"{where}.ratio")
        for side in ("numerator", "denominator"):
            if side not in spec:
                raise HarnessInputError(f"{where} ({says!r}): a ratio claim needs `{side}`")
            _check_selection(spec[side], f"{where}.{side}")
        _check_group(spec.get("pair_by", []), f"{where}.pair_by")
        _check_bounds(spec, where, says)
    return Claim(says.strip(), form, spec)


def _check_name(name, where):
    if not isinstance(name, str) or not name:
        raise HarnessInputError(f"{where} = {name!r}: expected a field name such as 'dtheta.relative_error'")


def _check_statuses(value, where):
    statuses = _as_list(value)
    if not statuses or not all(isinstance(s, str) for s in statuses):
        raise HarnessInputError(f"{where} = {value!r}: expected a status or a list of them")
    bad = [s for s in statuses if s not in STATUSES]
    if bad:
        raise HarnessInputError(f"{where} = {value!r}: unknown status {bad[0]!r}; a status is one of {list(STATUSES)}")


def _check_group(names, where):
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise HarnessInputError(f"{where} = {names!r}: expected a list of field names")


def _check_bounds(spec, where, says):
    bounds = _RANGE_KEYS & set(spec)
    if not bounds:
        raise HarnessInputError(f"{where} ({says!r}): expected `at_most` and/or `at_least`")
    for key in bounds:
        if not _is_number(spec[key]):
            raise HarnessInputError(f"{where}.{key} = {spec[key]!r}: expected a number")
    if bounds == _RANGE_KEYS and spec["at_least"] > spec["at_most"]:
        raise HarnessInputError(f"{where}: at_least = {spec['at_least']!r} > at_most = {spec['at_most']!r}: "
                                "no value can meet both")


def _check_selection(selection, where):
    if not isinstance(selection, dict):
        raise HarnessInputError(f"{where} = {selection!r}: expected a table of field = value")
    for key, value in selection.items():
        if isinstance(value, dict):
            if not value or set(value) - _RANGE_KEYS or not all(_is_number(v) for v in value.values()):
                raise HarnessInputError(
                    f"{where}.{key} = {value!r}: a range is {{ at_most = number, at_least = number }}"
                )
        if key == "status":
            _check_statuses(value, f"{where}.status")


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


# ------------------------------------------------------------------------------- names, statically
def check_names(claim: Claim, fields: dict, where: str) -> None:
    """Refuse a claim that names what its rows cannot have (HarnessInputError, one line).

    `fields`: kind -> {field: tuple of the values it can take in this experiment, or None}. A
    selection without `kind` reads the gradient rows. Checked: every selection key, each of its
    values (a value no row can have makes the scope empty), the metric, `over`, `per`, `group_by`,
    `pair_by` and `covers`.
    """
    claim = _on_kind(claim)
    kinds_used = set()
    for key, selection in claim.selections().items():
        kinds = _as_list(selection["kind"])
        unknown_kinds = [k for k in kinds if k not in fields]
        if unknown_kinds:
            raise HarnessInputError(f"{where}.{key}.kind = {unknown_kinds[0]!r}: this experiment's rows are "
                                    f"of kinds {sorted(fields)}")
        kinds_used |= set(kinds)
        if any(fields[k] is None for k in kinds):
            return  # a kind that does not declare its rows' fields: nothing to check against
        known = _fields_of(fields, kinds)
        for name, wanted in selection.items():
            if name == "kind":
                continue
            if name not in known:
                raise HarnessInputError(f"{where}.{key}.{name}: no such field in the {'/'.join(kinds)} rows; "
                                        f"fields are {sorted(known)}")
            values = known[name]
            if values is None:
                continue
            if isinstance(wanted, dict):
                if not any(_matches(v, wanted) for v in values):
                    raise HarnessInputError(f"{where}.{key}.{name} = {wanted!r} matches none of this experiment's "
                                            f"values {sorted(values, key=str)}: the claim's scope would be empty")
                continue
            for value in _as_list(wanted):
                if value not in values:
                    raise HarnessInputError(f"{where}.{key}.{name} = {value!r}: not a value of this experiment's "
                                            f"rows; expected one of {sorted(values, key=str)}")
    known = _fields_of(fields, sorted(kinds_used))
    names = {"metric": claim.spec.get("metric"), "monotone": claim.spec.get("monotone"),
             "over": claim.spec.get("over"), "ratio": claim.spec.get("ratio"), "per": claim.spec.get("per")}
    for key in ("group_by", "pair_by", "covers"):
        for i, name in enumerate(claim.spec.get(key, [])):
            names[f"{key}[{i}]"] = name
    for key, name in names.items():
        if name is not None and name not in known:
            close = difflib.get_close_matches(name, sorted(known), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise HarnessInputError(f"{where}.{key} = {name!r}: no such field in the {'/'.join(sorted(kinds_used))} "
                                    f"rows{hint}; fields are {sorted(known)}")


def _fields_of(fields: dict, kinds) -> dict:
    known: dict = {"kind": tuple(kinds)}
    for k in kinds:
        for name, values in fields[k].items():
            if name in known and known[name] is not None and values is not None:
                known[name] = tuple(known[name]) + tuple(v for v in values if v not in known[name])
            elif name in known:
                known[name] = None
            else:
                known[name] = values
    return known


# ------------------------------------------------------------------------------------- evaluation
def lookup(row: dict, name: str):
    """A row's field by dotted name (`dtheta.relative_error`), or None where it has none."""
    value = row
    for part in name.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def select(rows, selection: dict) -> list[dict]:
    """The rows whose fields match every entry of `selection`."""
    return [row for row in rows if all(_matches(lookup(row, k), v) for k, v in selection.items())]


def _matches(value, wanted) -> bool:
    if isinstance(wanted, dict):
        if not _is_number(value):
            return False
        return value <= wanted.get("at_most", math.inf) and value >= wanted.get("at_least", -math.inf)
    if isinstance(wanted, list):
        return value in wanted
    return value == wanted


def _within(value, spec) -> bool:
    return _is_number(value) and spec.get("at_least", -math.inf) <= value <= spec.get("at_most", math.inf)


def _bound_text(spec, unit: str = "") -> str:
    parts = []
    if "at_least" in spec:
        parts.append(f">= {spec['at_least']:g}{unit}")
    if "at_most" in spec:
        parts.append(f"<= {spec['at_most']:g}{unit}")
    return " and ".join(parts)


def _label(row: dict) -> str:
    keys = ("engine", "solver", "rtol", "seed", "horizon")
    return " ".join(f"{row[k]:g}" if isinstance(row.get(k), float) else str(row[k])
                    for k in keys if row.get(k) is not None)


def _labels(rows, most: int = 3) -> str:
    names = [_label(r) for r in rows]
    return ", ".join(names[:most]) + (f" and {len(names) - most} more" if len(names) > most else "")


def _margin(lowest, highest, spec, form: str = "every") -> tuple[float | None, str]:
    """How far the observed extremes sit inside the bounds, as a factor (< 1: outside), and a text.

    For an upper bound the extreme is the largest value (bound / largest), for a lower bound the
    smallest (smallest / bound); under `none` the roles swap (the closest approach to the excluded
    range), under `any` the best witness counts. Only defined where bound and value are positive.
    """
    factors, texts = [], []
    for key, upper in (("at_most", True), ("at_least", False)):
        if key not in spec:
            continue
        bound = spec[key]
        if form in ("none", "any"):
            extreme = lowest if upper else highest
        else:
            extreme = highest if upper else lowest
        if form == "none":
            pair = (extreme, bound) if upper else (bound, extreme)
        else:
            pair = (bound, extreme) if upper else (extreme, bound)
        digits = next((d for d in range(3, 12) if f"{extreme:.{d}g}" != f"{bound:.{d}g}"), 3)
        texts.append(f"{extreme:.{digits}g} against {'<=' if upper else '>='} {bound:.{digits}g}")
        if pair[0] > 0 and pair[1] > 0:
            factors.append(pair[0] / pair[1])
    if not factors:
        return None, ""
    margin = min(factors)
    return margin, f"; margin {margin:.3g}x (observed {', '.join(texts)})"


class _Scope:
    """The rows a selection reaches, split into those the claim counts and those it sets aside."""

    def __init__(self, claim: Claim, rows, selection: dict):
        where = {k: v for k, v in selection.items() if k != "status"}
        self.status = None if "status" not in selection else _as_list(selection["status"])
        self.matched = matched = select(rows, where)
        self.unavailable = [r for r in matched if r.get("status") == "unavailable"]
        excluding = set(claim.excluding)
        self.excluded = {s: [r for r in matched if r.get("status") == s] for s in claim.excluding}
        self.rows = [r for r in matched if r.get("status") != "unavailable" and r.get("status") not in excluding]
        self.selection = selection

    def status_ok(self, row) -> bool:
        return self.status is None or row.get("status") in self.status

    def notes(self) -> str:
        text = ""
        for status, rows in self.excluded.items():
            if rows:
                text += f"; {len(rows)} {status} row{'s' * (len(rows) > 1)} excluded as declared ({_labels(rows)})"
        if self.unavailable:
            text += (f"; {len(self.unavailable)} row{'s' * (len(self.unavailable) > 1)} unavailable on this "
                     "machine, not counted")
        return text


def _excluded_counts(*scopes) -> dict:
    out: dict = {}
    for scope in scopes:
        for status, rows in scope.excluded.items():
            out[status] = out.get(status, 0) + len(rows)
    return out


def _coverage(claim: Claim, scope: "_Scope", counted, groups=None) -> str | None:
    """Why the counted rows do not cover the grid in the claim's scope (None when they do).

    For each field of `covers`, the values wanted are those of every row the selection matches,
    whatever its status (failed, excluded and unavailable rows included); the rows the claim counted
    (per group, for `monotone`) must hold each of them.
    """
    missing = []
    for name in claim.spec.get("covers", []):
        wanted = {lookup(r, name) for r in scope.matched} - {None}
        for key, rows in (groups or {None: counted}).items():
            lacking = sorted(wanted - {lookup(r, name) for r in rows}, key=str)
            if lacking:
                where = f" in group {' '.join(map(str, key))}" if key is not None else ""
                values = ", ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in lacking)
                missing.append(f"{name} {values} of the grid{where} not covered")
    return "; ".join(missing) if missing else None


def evaluate(claims, rows) -> list[ClaimResult]:
    """Each claim against the result rows (dicts), in declaration order."""
    rows = list(rows)
    return [_EVALUATORS[claim.form](claim, rows) for claim in claims]


def _quantified(claim: Claim, rows) -> ClaimResult:
    spec = claim.spec
    selection = spec[claim.form]
    scope = _Scope(claim, rows, selection)
    chosen = scope.rows
    excluded = _excluded_counts(scope)
    if not chosen:
        return ClaimResult(claim.says, False, "no row matches the selection" + scope.notes(), 0, excluded=excluded)
    statuses = None if "status" not in spec else _as_list(spec["status"])
    metric, per = spec.get("metric"), spec.get("per")

    def value(row):
        v = lookup(row, metric)
        if per is not None and _is_number(v):
            v = v / row[per]
        return v

    def meets(row) -> bool:
        if undecided(row):  # a failed cell passes nothing, even where it carries a number
            return False
        if not scope.status_ok(row) or (statuses is not None and row.get("status") not in statuses):
            return False
        return metric is None or _within(value(row), spec)

    def failed(row) -> bool:  # a failed cell the claim did not ask for by its status
        return (row.get("status") == "failed" and "failed" not in (statuses or [])
                and "failed" not in (scope.status or []))

    def undecided(row) -> bool:  # a failed cell, or a missing or non-finite metric: never a pass
        return failed(row) or (metric is not None and not _is_number(value(row)))

    passing = [row for row in chosen if meets(row)]
    unknown = [row for row in chosen if undecided(row)]
    if claim.form == "every":
        offenders = [row for row in chosen if row not in passing]
    elif claim.form == "none":
        offenders = [row for row in chosen if row in passing or row in unknown]
    else:
        offenders = []
    holds = bool(passing) if claim.form == "any" else not offenders
    wanted = []
    conditions = [s for s in (scope.status, statuses) if s is not None]
    if conditions:
        wanted.append("status " + " and ".join(" or ".join(s) for s in conditions))
    if metric is not None:
        wanted.append(f"{metric}{' / ' + per if per else ''} {_bound_text(spec)}")
    evidence = f"{len(passing)} of {len(chosen)} rows have {', '.join(wanted)}"
    margin = None
    if metric is not None:
        values = [(value(row), row) for row in chosen if _is_number(value(row))]
        if values:
            low, high = min(values, key=lambda p: p[0]), max(values, key=lambda p: p[0])
            evidence += f"; range {low[0]:.3g} ({_label(low[1])}) to {high[0]:.3g} ({_label(high[1])})"
            margin, text = _margin(low[0], high[0], spec, claim.form)
            evidence += text
        numberless = [row for row in unknown if not failed(row)]
        if numberless and claim.form != "none":
            evidence += f"; {len(numberless)} row{'s' * (len(numberless) > 1)} without a number ({_labels(numberless)})"
    failures = [row for row in unknown if failed(row)]
    if failures and claim.form != "none":
        evidence += f"; {len(failures)} failed ({_labels(failures)})"
    if offenders:
        first = offenders[0]
        evidence += f"; first exception: {_label(first)} ({first.get('status')}"
        worst = value(first) if metric else None
        evidence += f", {metric} = {worst:.3g})" if _is_number(worst) else ")"
    evidence += scope.notes()
    gap = _coverage(claim, scope, passing if claim.form == "every" else chosen)
    if gap:
        holds = False
        evidence += f"; {gap}"
    loose = holds and margin is not None and margin > LOOSE
    return ClaimResult(claim.says, holds, evidence, len(chosen), margin, loose, excluded)


def _groups(rows, keys):
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault(tuple(lookup(row, k) for k in keys), []).append(row)
    return groups


def _monotone(claim: Claim, rows) -> ClaimResult:
    spec = claim.spec
    metric, over, keys = spec["monotone"], spec["over"], spec.get("group_by", [])
    scope = _Scope(claim, rows, spec.get("among", {}))
    chosen = scope.rows
    excluded = _excluded_counts(scope)
    sign = 1.0 if spec["direction"] == "increasing" else -1.0
    strict = spec.get("strict", True)
    if not chosen:
        return ClaimResult(claim.says, False, "no row matches the selection" + scope.notes(), 0, excluded=excluded)
    groups = sorted(_groups(chosen, keys).items(), key=lambda kv: str(kv[0]))
    problems, steps = [], []
    for key, group in groups:
        name = " ".join(str(k) for k in key) or "all rows"
        bad = [r for r in group if r.get("status") == "failed" or not scope.status_ok(r)
               or not _is_number(lookup(r, over)) or not _is_number(lookup(r, metric))]
        if bad:
            problems.append(f"{name}: {_label(bad[0])} has no {metric} ({bad[0].get('status')})")
            continue
        points = sorted((lookup(r, over), lookup(r, metric)) for r in group)
        xs = [x for x, _ in points]
        if len(points) < 2:
            problems.append(f"{name}: one point only, nothing to compare")
            continue
        duplicate = next((x for x, x1 in zip(xs, xs[1:]) if x == x1), None)
        if duplicate is not None:
            problems.append(f"{name}: two rows at {over} = {duplicate:g} (group_by lacks the field that "
                            "tells them apart)")
            continue
        for (x0, y0), (x1, y1) in zip(points, points[1:]):
            step = sign * (y1 - y0)
            if step < 0 or (strict and step == 0):
                problems.append(f"{name}: {metric} {y0:.3g} at {over} = {x0:g}, {y1:.3g} at {x1:g}")
                break
            if y0 > 0 and y1 > 0:
                steps.append(max(y0, y1) / min(y0, y1))
    manner = "strictly" if strict else "never against the direction (non-strict)"
    evidence = (f"{len(groups) - len(problems)} of {len(groups)} groups ({', '.join(keys) or 'all rows'}) "
                f"move {spec['direction']} {manner} along {over}")
    if steps:
        evidence += f"; smallest step {min(steps):.3g}x"
    if problems:
        evidence += f"; first exception: {problems[0]}"
        if len(problems) > 1:
            evidence += f" ({len(problems) - 1} more)"
    evidence += scope.notes()
    gap = _coverage(claim, scope, chosen, dict(groups))
    if gap:
        evidence += f"; {gap}"
    holds = not problems and not gap
    return ClaimResult(claim.says, holds, evidence, len(chosen), None, False, excluded)


def _ratio(claim: Claim, rows) -> ClaimResult:
    spec = claim.spec
    metric, keys = spec["ratio"], spec.get("pair_by", [])
    top_scope = _Scope(claim, rows, spec["numerator"])
    bottom_scope = _Scope(claim, rows, spec["denominator"])
    excluded = _excluded_counts(top_scope, bottom_scope)
    notes = "".join(f"; {side}: {n[2:]}" for side, n in (("numerator", top_scope.notes()),
                                                            ("denominator", bottom_scope.notes())) if n)
    both = [r for r in top_scope.rows if any(r is b for b in bottom_scope.rows)]
    if both:
        return ClaimResult(claim.says, False, f"{len(both)} rows are both numerator and denominator "
                           f"({_labels(both)}): a row paired with itself proves nothing" + notes, 0,
                           excluded=excluded)
    top, bottom = _groups(top_scope.rows, keys), _groups(bottom_scope.rows, keys)
    unpaired = [r for k in sorted(set(top) - set(bottom), key=str) for r in top[k]] + [
        r for k in sorted(set(bottom) - set(top), key=str) for r in bottom[k]]
    ratios, undecided = [], []
    for key in sorted(set(top) & set(bottom), key=str):
        for a in top[key]:
            for b in bottom[key]:
                x, y = lookup(a, metric), lookup(b, metric)
                usable = (top_scope.status_ok(a) and bottom_scope.status_ok(b)
                          and "failed" not in (a.get("status"), b.get("status")))
                if usable and _is_number(x) and _is_number(y) and y != 0:
                    ratios.append((x / y, key))
                else:
                    undecided.append((a, b))
    if not ratios:
        evidence = "no numerator row pairs with a denominator row"
        if unpaired:
            evidence += f"; unpaired: {_labels(unpaired)}"
        return ClaimResult(claim.says, False, evidence + notes, 0, excluded=excluded)
    low, high = min(ratios), max(ratios)
    holds = all(_within(r, spec) for r, _ in ratios) and not unpaired and not undecided
    # Enough digits to tell the ends apart (ratios near one, e.g. of two log-likelihoods).
    digits = next((d for d in range(3, 12) if f"{low[0]:.{d}g}" != f"{high[0]:.{d}g}"), 3)

    def pair(key):
        return f" ({' '.join(map(str, key))})" if key else ""

    evidence = (
        f"{metric} ratio {_bound_text(spec)} wanted; {len(ratios)} pairs range "
        f"{low[0]:.{digits}g}{pair(low[1])} to {high[0]:.{digits}g}{pair(high[1])}"
    )
    margin, text = _margin(low[0], high[0], spec)
    evidence += text
    if unpaired:
        evidence += f"; {len(unpaired)} row{'s' * (len(unpaired) > 1)} without a partner ({_labels(unpaired)})"
    if undecided:
        a, b = undecided[0]
        evidence += (f"; {len(undecided)} pair{'s' * (len(undecided) > 1)} without a usable ratio "
                     f"(first: {_label(a)} over {_label(b)})")
    evidence += notes
    paired_top = [r for k in set(top) & set(bottom) for r in top[k]]
    gap = _coverage(claim, top_scope, paired_top)
    if gap:
        holds = False
        evidence += f"; {gap}"
    loose = holds and margin is not None and margin > LOOSE
    return ClaimResult(claim.says, holds, evidence, len(ratios), margin, loose, excluded)


_EVALUATORS = {"every": _quantified, "any": _quantified, "none": _quantified, "monotone": _monotone, "ratio": _ratio}


# ------------------------------------------------------------------------------- an experiment's
def experiment_rows(analysis: dict) -> list[dict]:
    """The rows an experiment's claims are evaluated over: every registered kind's `claim_rows`
    (the gradient grid's, the training runs' without their histories, ...), each row marked with
    its `kind`."""
    from ._kind import registered_kinds

    return [{**row, "kind": k.name} for k in registered_kinds() for row in k.claim_rows(analysis)]


def _on_kind(claim: Claim) -> Claim:
    """The claim with `kind = "gradient"` added to each selection that does not name a kind."""
    spec = dict(claim.spec)
    for key, selection in claim.selections().items():
        selection = dict(selection)
        selection.setdefault("kind", "gradient")
        spec[key] = selection
    return Claim(claim.says, claim.form, spec)


def evaluate_experiment(claims, analysis: dict) -> list[ClaimResult]:
    """Each claim over the experiment's rows; a selection without `kind` reads the gradient rows."""
    return evaluate([_on_kind(c) for c in claims], experiment_rows(analysis))


def failed_first(results) -> list[ClaimResult]:
    """Failed claims first (they are the news), each group in declaration order."""
    return [r for r in results if not r.holds] + [r for r in results if r.holds]
