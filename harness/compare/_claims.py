"""Claims: the findings an experiment expects, declared in its file and checked against its results.

A claim is data, never code: a sentence (`says`) and one predicate from a small vocabulary, evaluated
over the experiment's result rows (one row per engine x solver x tolerance x seed cell, with its
`status` and metrics such as `dtheta.relative_error`, `n_rhs`, `seconds`). The report prints each
claim with ✓ or ✗ and the numbers that decide it; a claim that fails is news, shown first, and
`harness compare` exits with its own status so that scripts can gate on findings.

    [[claims]]                      # every selected row meets a condition (also: `any`, `none`)
    says = "BacksolveAdjoint fails or is flagged on every stiff cell"
    every = { engine = "BacksolveAdjoint", backend = "harness" }
    status = ["failed", "flagged"]

    [[claims]]                      # a metric bound, optionally in units of the row's rtol or atol
    says = "every adjoint is within 100x rtol of the reference at rtol <= 1e-6"
    every = { backend = "harness", rtol = { at_most = 1e-6 }, status = "ok" }
    metric = "dtheta.relative_error"
    per = "rtol"
    at_most = 100

    [[claims]]                      # a metric that moves one way along another, in every group
    says = "the error falls with the tolerance for every engine and seed"
    monotone = "dtheta.relative_error"
    over = "rtol"
    direction = "increasing"        # the metric grows with rtol
    among = { status = "ok" }
    group_by = ["engine", "solver", "seed"]

    [[claims]]                      # a ratio between two selections, paired row by row
    says = "DP5 costs at least 10x the evaluations of RadauIIA5"
    ratio = "n_rhs"
    numerator = { solver = "DP5" }
    denominator = { solver = "RadauIIA5" }
    pair_by = ["engine", "rtol", "seed"]
    at_least = 10

A selection maps a row field to a value (equality), a list (membership) or a range
`{ at_most = x, at_least = y }`. A selection that matches no row makes its claim fail: a claim about
nothing is not evidence.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from ..errors import HarnessInputError

QUANTIFIERS = ("every", "any", "none")
FORMS = (*QUANTIFIERS, "monotone", "ratio")
_RANGE_KEYS = {"at_most", "at_least"}
_COMMON_KEYS = {"says"}
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


@dataclass(frozen=True)
class ClaimResult:
    """A claim evaluated: whether it holds, and the numbers that decide it, in one line."""

    says: str
    holds: bool
    evidence: str
    n_rows: int

    def as_dict(self) -> dict:
        return {"says": self.says, "holds": self.holds, "evidence": self.evidence, "n_rows": self.n_rows}

    def line(self) -> str:
        return f"{'✓' if self.holds else '✗'} {self.says} ({self.evidence})"


# ---------------------------------------------------------------------------------------- parsing
def parse_claims(tables, where: str = "claims") -> tuple[Claim, ...]:
    """Validate the `[[claims]]` tables of an experiment file; one HarnessInputError per mistake."""
    if tables is None:
        return ()
    if not isinstance(tables, list):
        raise HarnessInputError(f"{where}: expected an array of tables ([[claims]]), got {tables!r}")
    return tuple(_parse_claim(table, f"{where}[{i}]") for i, table in enumerate(tables))


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
            statuses = spec["status"] if isinstance(spec["status"], list) else [spec["status"]]
            if not statuses or not all(isinstance(s, str) for s in statuses):
                raise HarnessInputError(f"{where}.status = {spec['status']!r}: expected a status or a list of them")
    elif form == "monotone":
        _check_name(spec["monotone"], f"{where}.monotone")
        _check_name(spec.get("over"), f"{where}.over")
        if spec.get("direction") not in ("increasing", "decreasing"):
            raise HarnessInputError(
                f"{where}.direction = {spec.get('direction')!r}: expected 'increasing' or 'decreasing'"
            )
        _check_selection(spec.get("among", {}), f"{where}.among")
        _check_group(spec.get("group_by", []), f"{where}.group_by")
        if not isinstance(spec.get("strict", False), bool):
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


def _check_selection(selection, where):
    if not isinstance(selection, dict):
        raise HarnessInputError(f"{where} = {selection!r}: expected a table of field = value")
    for key, value in selection.items():
        if isinstance(value, dict):
            if not value or set(value) - _RANGE_KEYS or not all(_is_number(v) for v in value.values()):
                raise HarnessInputError(
                    f"{where}.{key} = {value!r}: a range is {{ at_most = number, at_least = number }}"
                )


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


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
    keys = ("engine", "solver", "rtol", "seed")
    return " ".join(f"{row[k]:g}" if isinstance(row.get(k), float) else str(row[k]) for k in keys if k in row)


def evaluate(claims, rows) -> list[ClaimResult]:
    """Each claim against the result rows (dicts), in declaration order."""
    return [_EVALUATORS[claim.form](claim, list(rows)) for claim in claims]


def _quantified(claim: Claim, rows) -> ClaimResult:
    spec = claim.spec
    chosen = select(rows, spec[claim.form])
    if not chosen:
        return ClaimResult(claim.says, False, "no row matches the selection", 0)
    statuses = spec.get("status")
    statuses = None if statuses is None else (statuses if isinstance(statuses, list) else [statuses])
    metric, per = spec.get("metric"), spec.get("per")

    def value(row):
        v = lookup(row, metric)
        if per is not None and _is_number(v):
            v = v / row[per]
        return v

    def meets(row) -> bool:
        if statuses is not None and row.get("status") not in statuses:
            return False
        return metric is None or _within(value(row), spec)

    passing = [row for row in chosen if meets(row)]
    holds = {
        "every": len(passing) == len(chosen),
        "any": bool(passing),
        "none": not passing,
    }[claim.form]
    wanted = []
    if statuses is not None:
        wanted.append("status " + " or ".join(statuses))
    if metric is not None:
        wanted.append(f"{metric}{' / ' + per if per else ''} {_bound_text(spec)}")
    evidence = f"{len(passing)} of {len(chosen)} rows have {', '.join(wanted)}"
    if metric is not None:
        values = [(value(row), row) for row in chosen if _is_number(value(row))]
        if values:
            low, high = min(values, key=lambda p: p[0]), max(values, key=lambda p: p[0])
            evidence += f"; range {low[0]:.3g} ({_label(low[1])}) to {high[0]:.3g} ({_label(high[1])})"
    offenders = [row for row in chosen if (row in passing) == (claim.form == "none")]
    if not holds and offenders and claim.form != "any":
        evidence += f"; first exception: {_label(offenders[0])} ({offenders[0].get('status')}"
        worst = lookup(offenders[0], metric) if metric else None
        evidence += f", {metric} = {worst:.3g})" if _is_number(worst) else ")"
    return ClaimResult(claim.says, holds, evidence, len(chosen))


def _groups(rows, keys):
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault(tuple(lookup(row, k) for k in keys), []).append(row)
    return groups


def _monotone(claim: Claim, rows) -> ClaimResult:
    spec = claim.spec
    metric, over, keys = spec["monotone"], spec["over"], spec.get("group_by", [])
    chosen = select(rows, spec.get("among", {}))
    sign = 1.0 if spec["direction"] == "increasing" else -1.0
    strict = spec.get("strict", False)
    checked, broken = 0, []
    for key, group in sorted(_groups(chosen, keys).items(), key=lambda kv: str(kv[0])):
        points = sorted(
            ((lookup(r, over), lookup(r, metric)) for r in group
             if _is_number(lookup(r, over)) and _is_number(lookup(r, metric))),
        )
        if len(points) < 2:
            continue
        checked += 1
        for (x0, y0), (x1, y1) in zip(points, points[1:]):
            step = sign * (y1 - y0)
            if step < 0 or (strict and step == 0):
                broken.append((key, x0, y0, x1, y1))
                break
    if checked == 0:
        return ClaimResult(claim.says, False, "no group has two or more rows to compare", len(chosen))
    evidence = (f"{checked - len(broken)} of {checked} groups ({', '.join(keys) or 'all rows'}) "
                f"move {spec['direction']} along {over}")
    if broken:
        key, x0, y0, x1, y1 = broken[0]
        name = " ".join(str(k) for k in key)
        evidence += f"; first exception: {name}: {metric} {y0:.3g} at {over} = {x0:g}, {y1:.3g} at {x1:g}"
    return ClaimResult(claim.says, not broken, evidence, len(chosen))


def _ratio(claim: Claim, rows) -> ClaimResult:
    spec = claim.spec
    metric, keys = spec["ratio"], spec.get("pair_by", [])
    top = _groups(select(rows, spec["numerator"]), keys)
    bottom = _groups(select(rows, spec["denominator"]), keys)
    ratios = []
    for key in sorted(set(top) & set(bottom), key=str):
        for a in top[key]:
            for b in bottom[key]:
                x, y = lookup(a, metric), lookup(b, metric)
                if _is_number(x) and _is_number(y) and y != 0:
                    ratios.append((x / y, key))
    if not ratios:
        return ClaimResult(claim.says, False, "no numerator row pairs with a denominator row", 0)
    low, high = min(ratios), max(ratios)
    holds = all(_within(r, spec) for r, _ in ratios)
    # Enough digits to tell the ends apart (ratios near one, e.g. of two log-likelihoods).
    digits = next((d for d in range(3, 12) if f"{low[0]:.{d}g}" != f"{high[0]:.{d}g}"), 3)

    def pair(key):
        return f" ({' '.join(map(str, key))})" if key else ""

    evidence = (
        f"{metric} ratio {_bound_text(spec)} wanted; {len(ratios)} pairs range "
        f"{low[0]:.{digits}g}{pair(low[1])} to {high[0]:.{digits}g}{pair(high[1])}"
    )
    return ClaimResult(claim.says, holds, evidence, len(ratios))


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
    keys = {"monotone": ("among",), "ratio": ("numerator", "denominator")}.get(claim.form, (claim.form,))
    spec = dict(claim.spec)
    for key in keys:
        selection = dict(spec.get(key, {}))
        selection.setdefault("kind", "gradient")
        spec[key] = selection
    return Claim(claim.says, claim.form, spec)


def evaluate_experiment(claims, analysis: dict) -> list[ClaimResult]:
    """Each claim over the experiment's rows; a selection without `kind` reads the gradient rows."""
    return evaluate([_on_kind(c) for c in claims], experiment_rows(analysis))


def failed_first(results) -> list[ClaimResult]:
    """Failed claims first (they are the news), each group in declaration order."""
    return [r for r in results if not r.holds] + [r for r in results if r.holds]
