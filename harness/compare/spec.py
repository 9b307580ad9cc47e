"""Experiment files: a TOML description of a comparison, parsed and validated into frozen values.

An experiment names a problem, a grid (engines x solvers x tolerances x seeds), a reference, an
optional training comparison and the figures to draw:

    title = "The tutorial problem"

    [problem]
    name = "seed"              # a catalogue problem ("seed", "stiff", "multi_time", "deep") ...
    # file = "my_problem.npz"  # ... or a problem file (see harness.problems), relative to this file
    batch = 500
    # times = [100.0]          # observe the same ground truth at other times (catalogue only)
    # augment = 1              # fit with A augmented dimensions (an augmented Neural ODE)

    [grid]
    engines = ["BacksolveAdjoint", { engine = "InterpolatingAdjoint", checkpointing = true },
               "torchdiffeq:odeint_adjoint", "julia:GaussAdjoint"]
    solvers = ["DP5"]          # the solver of the forward and the backward pass
    tolerances = [1e-4, 1e-6, [1e-8, 1e-10]]   # rtol = atol, or [rtol, atol]
    seeds = [0]

    [reference]
    engine = "ForwardSensitivity"
    solver = "DP8"
    rtol = 1e-10
    atol = 1e-10

    [training]
    engines = ["BacksolveAdjoint", "InterpolatingAdjoint"]
    steps = 200
    # augment = [0, 1]         # train each engine with each augmentation (overrides [problem])

    [plots]
    figures = ["heatmap", "work_precision", "memory", "training", "trajectories"]

    [[claims]]                 # the findings the experiment expects (harness.compare._claims)
    says = "every adjoint is within 100x rtol of the reference at rtol <= 1e-6"
    every = { backend = "harness", rtol = { at_most = 1e-6 }, status = "ok" }
    metric = "dtheta.relative_error"
    per = "rtol"
    at_most = 100

[problem], [plots], [[claims]] and the top-level keys are read here; every other table belongs to an experiment
kind ([grid] and [reference] to the gradient kind, [training] to the training kind, a user's table
to the kind that registered it), which validates it. Every key is checked; a mistake raises one
HarnessInputError naming the key, what it got, and the valid choices. Nothing runs until the whole
file is valid.
"""

from __future__ import annotations

import math
import re
import sys
from dataclasses import dataclass, fields, is_dataclass
from pathlib import Path

from ..errors import HarnessInputError
from ..problems import PROBLEMS
from .._backends import BACKENDS
from ..peers import PEER_METHODS
from ..sensitivity import ENGINES
from ..solvers import SOLVERS

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

# Engines outside the harness are named "backend:Name" (`harness._backends`, which builds them through
# `harness.sensitivity.resolve_engine`). Peers' names are known statically; Julia's come from
# harness.julia at run time (Julia may be absent), so only their form is checked here.
PEER_ENGINES = PEER_METHODS  # backend -> methods, kept by harness.peers
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


# ------------------------------------------------------------------------------------------ values
@dataclass(frozen=True)
class ProblemSpec:
    """Which problem to build: a catalogue name or a problem file, with its options.

    Frozen and hashable, so that a worker can build (and cache) the problem from it alone.
    `times` re-observes the catalogue problem's ground truth at other times (e.g. a long horizon).
    `augment` fits the problem's data with that many augmented dimensions (`augment_problem`).
    """

    name: str | None = None
    file: str | None = None
    batch: int = 500
    times: tuple[float, ...] | None = None
    augment: int = 0

    @property
    def label(self) -> str:
        base = self.name if self.name is not None else Path(self.file).stem
        if self.times is not None:
            base += f" (t = {', '.join(f'{t:g}' for t in self.times)})"
        if self.augment:
            base += f", augmented by {self.augment}"
        return base

    def as_dict(self) -> dict:
        out = {"name": self.name, "file": self.file, "batch": self.batch,
               "times": list(self.times) if self.times is not None else None}
        if self.augment:  # only when set, so that the cell keys of plain problems do not change
            out["augment"] = self.augment
        return out


@dataclass(frozen=True)
class EngineSpec:
    """One engine of the grid: its backend, its name there, and its options as sorted pairs.

    `label` is what tables and legends show, e.g. "InterpolatingAdjoint(checkpointing=True)".
    """

    backend: str
    name: str
    options: tuple[tuple[str, object], ...] = ()
    label: str = ""

    def __post_init__(self):
        if not self.label:
            label = self.name if self.backend == "harness" else f"{self.backend}:{self.name}"
            if self.options:
                label += "(" + ", ".join(f"{k}={v}" for k, v in self.options) + ")"
            object.__setattr__(self, "label", label)

    def as_dict(self) -> dict:
        return {"backend": self.backend, "name": self.name, "options": dict(self.options),
                "label": self.label}


@dataclass(frozen=True)
class Experiment:
    """A validated experiment file. `path` is where it was read from (None when built in code).

    `sections` holds, per experiment kind the file uses (`harness.compare.register_kind`), that kind's
    validated settings, in the registry's order: ("gradient", GradientSettings), ("training",
    TrainingSpec), or a kind registered by the user. `grid` and `training` read the two built-in
    kinds' settings; the grid's fields (`engines`, `solvers`, ...) are read through for brevity.
    """

    title: str
    description: str
    problem: ProblemSpec
    sections: tuple[tuple[str, object], ...]
    figures: tuple[str, ...]
    path: str | None = None
    claims: tuple = ()  # harness.compare._claims.Claim, validated with the rest of the file

    def settings(self, kind: str):
        """The settings of `kind` (a kind's name), or None if this experiment does not use it."""
        return dict(self.sections).get(kind)

    @property
    def grid(self):
        return self.settings("gradient")

    @property
    def training(self):
        return self.settings("training")

    engines = property(lambda self: self.grid.engines)
    solvers = property(lambda self: self.grid.solvers)
    tolerances = property(lambda self: self.grid.tolerances)
    seeds = property(lambda self: self.grid.seeds)
    forward_solver = property(lambda self: self.grid.forward_solver)
    reference = property(lambda self: self.grid.reference)
    measure_memory = property(lambda self: self.grid.measure_memory)

    def with_training_steps(self, steps: int) -> "Experiment":
        """The same experiment with the training comparison shortened (or lengthened) to `steps`."""
        from dataclasses import replace

        if self.training is None:
            return self
        sections = tuple((name, replace(s, steps=steps) if name == "training" else s)
                         for name, s in self.sections)
        return replace(self, sections=sections)

    def as_dict(self) -> dict:
        """Plain data for results.json."""
        from ._kind import kind

        out = {"title": self.title, "description": self.description, "path": self.path,
               "problem": self.problem.as_dict()}
        for name, settings in self.sections:
            out.update(kind(name).settings_as_dict(settings))
        out["figures"] = list(self.figures)
        out["claims"] = [c.as_dict() for c in self.claims]
        return out


# -------------------------------------------------------------------------------------- checking
def _fail(where: str, message: str):
    raise HarnessInputError(f"{where}: {message}")


def _check_keys(table: dict, where: str, required: tuple, optional: tuple) -> None:
    valid = list(required) + list(optional)
    unknown = sorted(set(table) - set(valid))
    if unknown:
        _fail(where, f"unknown key{'s' if len(unknown) > 1 else ''} {unknown}: valid keys are {valid}")
    missing = [k for k in required if k not in table]
    if missing:
        _fail(where, f"missing key{'s' if len(missing) > 1 else ''} {missing}: valid keys are {valid}")


def _table(document: dict, key: str, where: str, required: bool) -> dict | None:
    if key not in document:
        if required:
            _fail(where, f"missing table [{key}]")
        return None
    value = document[key]
    if not isinstance(value, dict):
        _fail(f"{where} {key}", f"expected a table [{key}], got {type(value).__name__}")
    return value


def _string(value, where: str, choices=None) -> str:
    if not isinstance(value, str):
        _fail(where, f"expected a string, got {value!r}")
    if choices is not None and value not in choices:
        _fail(where, f"unknown value {value!r}: expected one of {sorted(choices)}")
    return value


def _int(value, where: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        _fail(where, f"expected an integer >= {minimum}, got {value!r}")
    return value


def _positive(value, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
        math.isfinite(value) and value > 0
    ):
        _fail(where, f"expected a finite number > 0, got {value!r}")
    return float(value)


def _solver(value, where: str) -> str:
    """A solver name of the registry (`harness.solvers.SOLVERS`)."""
    return _string(value, where, SOLVERS)


def _bool(value, where: str) -> bool:
    if not isinstance(value, bool):
        _fail(where, f"expected true or false, got {value!r}")
    return value


def _nonempty_list(value, where: str) -> list:
    if not isinstance(value, list):
        _fail(where, f"expected a list, got {value!r}")
    if not value:
        _fail(where, "is empty: the grid needs at least one entry on every axis")
    return value


def _engine_fields(name: str) -> dict:
    """The options a registered engine takes (its dataclass fields; none otherwise), name -> default."""
    cls = ENGINES[name]
    return {f.name: f.default for f in fields(cls)} if is_dataclass(cls) else {}


def parse_engine(value, where: str) -> EngineSpec:
    """An engine entry: "Name", "backend:Name", or { engine = "...", label = "...", option = ... }."""
    if isinstance(value, str):
        name, options, label = value, {}, ""
    elif isinstance(value, dict):
        if "engine" not in value:
            _fail(where, f"an engine table needs the key 'engine', got keys {sorted(value)}")
        name = _string(value["engine"], f"{where}.engine")
        label = _string(value.get("label", ""), f"{where}.label")
        options = {k: v for k, v in value.items() if k not in ("engine", "label")}
    else:
        _fail(where, f"expected an engine name or a table, got {value!r}")
    backend, _, short = name.rpartition(":")
    backend = backend or "harness"
    valid_names = sorted(ENGINES) + [f"{b}:{n}" for b, names in PEER_ENGINES.items() for n in names] + [
        "julia:<Name>"
    ]
    if backend == "harness":
        if short not in ENGINES:
            _fail(where, f"unknown engine {name!r}: expected one of {valid_names}")
        valid = _engine_fields(short)
        # The grid sets solver and tolerances per cell; an engine table must not fix them.
        settable = sorted(set(valid) - {"solver", "rtol", "atol"})
        for key, option in options.items():
            if key not in settable:
                _fail(where, f"unknown option {key!r} for {short}: valid options are {settable}")
            default = valid[key]
            if isinstance(default, bool):
                _bool(option, f"{where}.{key}")
            elif isinstance(default, (int, float)) and (
                isinstance(option, bool) or not isinstance(option, (int, float))
            ):
                _fail(f"{where}.{key}", f"expected a number, got {option!r}")
            elif isinstance(default, str):
                _string(option, f"{where}.{key}")
    elif backend in PEER_ENGINES:
        if short not in PEER_ENGINES[backend]:
            _fail(where, f"unknown engine {name!r}: expected one of {valid_names}")
        if options:
            _fail(where, f"{name} takes no options, got {sorted(options)}")
    elif backend == "julia":
        if not _IDENTIFIER.match(short):
            _fail(where, f"engine {name!r}: expected 'julia:<Name>' with an identifier as Name")
        for key, option in options.items():
            if not isinstance(option, (bool, int, float, str)):
                _fail(f"{where}.{key}", f"expected a plain value, got {option!r}")
    else:
        _fail(where, f"unknown backend {backend!r} in {name!r}: expected one of {list(BACKENDS)}")
    return EngineSpec(backend, short, tuple(sorted(options.items())), label)


def _tolerance(value, where: str) -> tuple[float, float]:
    if isinstance(value, list):
        if len(value) != 2:
            _fail(where, f"expected a number (rtol = atol) or [rtol, atol], got {value!r}")
        return _positive(value[0], f"{where} rtol"), _positive(value[1], f"{where} atol")
    tol = _positive(value, where)
    return tol, tol


def _parse_problem(table: dict, base: Path | None) -> ProblemSpec:
    where = "[problem]"
    _check_keys(table, where, (), ("name", "file", "batch", "times", "augment"))
    augment = _int(table.get("augment", 0), f"{where} augment", 0)
    if ("name" in table) == ("file" in table):
        _fail(where, "expected exactly one of 'name' (a catalogue problem) or 'file' (a problem file)")
    if "file" in table:
        path = Path(_string(table["file"], f"{where} file"))
        if not path.is_absolute() and base is not None:
            path = base / path
        if not path.is_file():
            _fail(f"{where} file", f"{str(path)!r} does not exist")
        for key in ("batch", "times"):
            if key in table:
                _fail(f"{where} {key}", "applies to catalogue problems only: a problem file fixes it")
        return ProblemSpec(file=str(path.resolve()), batch=0, augment=augment)
    name = _string(table["name"], f"{where} name", PROBLEMS)
    batch = _int(table.get("batch", 500), f"{where} batch", 1)
    times = None
    if "times" in table:
        raw = _nonempty_list(table["times"], f"{where} times")
        times = tuple(_positive(t, f"{where} times") for t in raw)
        if any(b <= a for a, b in zip(times, times[1:])):
            _fail(f"{where} times", f"{list(times)} are not strictly increasing")
    return ProblemSpec(name=name, batch=batch, times=times, augment=augment)


def parse_experiment(document: dict, *, base: Path | None = None, path: str | None = None) -> Experiment:
    """Validate a parsed TOML document (a dict) into an `Experiment`; HarnessInputError if invalid.

    [problem] and the top-level keys are read here; every other table belongs to one registered
    experiment kind, which validates it (`ExperimentKind.parse`). A kind whose tables are absent
    is not used, unless it is required (the gradient grid).
    """
    from ._kind import kind, registered_kinds

    where = str(path) if path else "experiment"
    kinds = registered_kinds()
    tables = [t for k in kinds for t in k.tables]
    from ._claims import parse_claims

    _check_keys(document, where, ("problem",), ("title", "description", "plots", "claims", *tables))
    title = _string(document.get("title", Path(path).stem if path else "experiment"), "title")
    description = _string(document.get("description", ""), "description")
    problem = _parse_problem(_table(document, "problem", where, True), base)

    sections = []
    for k in kinds:
        present = {t: _table(document, t, where, False) for t in k.tables if t in document}
        if not present and not k.required:
            continue
        if k.required and k.tables[0] not in present:
            _table(document, k.tables[0], where, True)  # raises: the required table is missing
        sections.append((k.name, k.parse(present, problem=problem, base=base)))

    valid_figures = [f for k in kinds for f in k.figures]
    used_figures = [f for k in kinds if any(n == k.name for n, _ in sections) for f in k.figures]
    plots = _table(document, "plots", where, False) or {}
    _check_keys(plots, "[plots]", (), ("figures",))
    figures = plots.get("figures", used_figures)
    if not isinstance(figures, list):
        _fail("[plots] figures", f"expected a list, got {figures!r}")
    figures = tuple(_string(f, "[plots] figures", valid_figures) for f in figures)
    fields = {name: kind(name).claim_fields(settings) for name, settings in sections}
    claims = parse_claims(document.get("claims"), "[[claims]]", fields)
    experiment = Experiment(
        title=title,
        description=description,
        problem=problem,
        sections=tuple(sections),
        figures=figures,
        path=str(path) if path else None,
        claims=claims,
    )
    render_description(experiment)  # a quoted setting that does not exist is a mistake in the file
    return experiment


def render_description(experiment: Experiment) -> str:
    """The description with each `{table[key]}` replaced by the experiment's own setting.

    A description that quotes a setting reads it from the experiment (`lr = {training[lr]:g}`), so
    the text cannot disagree with the run; literal braces are written `{{` and `}}`.
    """
    settings = experiment.as_dict()
    try:
        return experiment.description.format_map(settings)
    except (KeyError, IndexError, ValueError, AttributeError, TypeError) as err:
        raise HarnessInputError(
            f"description: cannot fill in {{...}} ({type(err).__name__}: {err}): a setting is quoted as "
            f"{{table[key]}} with table one of {sorted(settings)}, e.g. {{training[lr]:g}}; "
            "literal braces are doubled"
        ) from None


def load_experiment(path) -> Experiment:
    """Read and validate an experiment file (TOML); HarnessInputError names the first mistake."""
    path = Path(path)
    if not path.is_file():
        raise HarnessInputError(f"experiment file {str(path)!r} does not exist")
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as err:
        raise HarnessInputError(f"{path}: not valid TOML ({err})") from None
    except UnicodeDecodeError:
        raise HarnessInputError(f"{path}: not a UTF-8 text file") from None
    return parse_experiment(document, base=path.parent, path=str(path))
