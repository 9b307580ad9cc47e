"""Experiment kinds: what one kind of comparison supplies, and the registry that holds them.

A kind (the gradient grid, the training comparison, or one a user writes, e.g. cost against batch
size) is one object that supplies every step of its part of an experiment:

    parse        its TOML tables -> its frozen settings (validated; HarnessInputError otherwise)
    cells        its cells (frozen, picklable values with `kind`, `role` and `as_dict()`; a frozen
                 dataclass that derives from `Cell` gets its `as_dict` from its fields)
    run          one cell -> a JSON-ready record (`base_record` gives the common fields)
    analyse      its records -> its tables (merged into results.json)
    summary      its plain-language findings
    draw         its figures
    report       its section of report.md

and is registered in one call, `register_kind(MyKind())`. The parser, the runner, the report and
the figure writer iterate over the kinds an experiment uses and know nothing else about them.
"""

from __future__ import annotations

import dataclasses

from ..errors import HarnessInputError


class Cell:
    """Base of a kind's cells (frozen dataclasses with class attributes `kind` and `role`).

    `as_dict` is the cell's settings as plain values: `kind`, `role` and every field, a field that has
    its own `as_dict` (a ProblemSpec, an EngineSpec) by that. The cell's key is a hash of it
    (`_cells.cell_key`), so it is derived from the fields rather than listed by hand: a field added to
    a cell cannot be left out of its key.
    """

    def as_dict(self) -> dict:
        settings = {"kind": self.kind, "role": self.role}
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            settings[field.name] = value.as_dict() if hasattr(value, "as_dict") else value
        return settings


class ExperimentKind:
    """Base class of an experiment kind; subclass it and override what the kind does.

    Attributes
    ----------
    name : str
        The kind's name: the `kind` of its cells and records, its key in `Experiment.sections`.
    tables : tuple of str
        The TOML tables it reads (the first one is the table that switches the kind on).
    required : bool
        Whether every experiment uses it (the gradient grid); otherwise only when its tables appear.
    figures : tuple of str
        The figure names it can draw, as listed in [plots] figures.
    """

    name: str = ""
    tables: tuple[str, ...] = ()
    required: bool = False
    figures: tuple[str, ...] = ()

    def parse(self, tables: dict, *, problem, base):
        """Its settings from its `tables` ({table name: dict}); `problem` is the ProblemSpec."""
        raise NotImplementedError

    def settings_as_dict(self, settings) -> dict:
        """Plain data for the experiment's settings in results.json: {table name: value}."""
        return {self.name: settings}

    def backends(self, settings) -> set[str]:
        """The engine backends its cells use (for the provenance's backend versions)."""
        return set()

    def cells(self, experiment, settings) -> list:
        raise NotImplementedError

    def run(self, cell) -> dict:
        """One cell's record; `cells.base_record(cell, status, reason)` gives the common fields."""
        raise NotImplementedError

    def analyse(self, experiment, settings, records: list[dict], problem) -> dict:
        """Its tables from its records (and the problem built for the first seed)."""
        return {}

    def summary(self, experiment, settings, analysis: dict) -> list[str]:
        return []

    def draw(self, experiment, settings, analysis: dict, save) -> None:
        """Draw the figures named in `experiment.figures`: `save(figure name, Figure, file name)`."""

    def report(self, experiment, settings, analysis: dict, written: dict) -> list[str]:
        """Its report.md section, as lines; `written` maps figure names to the files saved."""
        return []

    def claim_fields(self, settings) -> dict | None:
        """The fields of its claim rows, so that a claim's names are checked when the file is read:
        {dotted name: tuple of the values it can take in this experiment, or None for any value
        (a metric)}. None (the default): not declared, a claim's names on its rows go unchecked."""
        return None

    def claim_rows(self, analysis: dict) -> list[dict]:
        """The rows of its analysis that declared claims read (`harness.compare._claims`); each gets
        `kind` = this kind's name, which a claim's selection names to read them."""
        return []


_KINDS: dict[str, ExperimentKind] = {}


def register_kind(kind: ExperimentKind) -> ExperimentKind:
    """Register an experiment kind (an `ExperimentKind` instance); returns it.

    Registering a kind of the same name again replaces it (a module re-imported in a notebook).
    A name, or a table, that another kind already uses is rejected.
    """
    if not isinstance(kind, ExperimentKind) or not kind.name or not kind.tables:
        raise HarnessInputError(
            f"register_kind: expected an ExperimentKind instance with a name and its tables, "
            f"got {kind!r}"
        )
    reserved = {"problem", "plots", "title", "description"}
    for other in _KINDS.values():
        if other.name != kind.name:
            reserved |= set(other.tables) | set(other.figures)
    clash = sorted(reserved & (set(kind.tables) | set(kind.figures)))
    if clash:
        raise HarnessInputError(f"register_kind {kind.name!r}: {clash} already belong to another kind")
    _KINDS[kind.name] = kind
    return kind


def kind(name: str) -> ExperimentKind:
    """The registered kind called `name`."""
    try:
        return _KINDS[name]
    except KeyError:
        raise HarnessInputError(
            f"unknown experiment kind {name!r}: registered kinds are {sorted(_KINDS)} "
            "(a kind is registered with harness.compare.register_kind)"
        ) from None


def registered_kinds() -> list[ExperimentKind]:
    """Every registered kind, in the order they were registered (built-in kinds first)."""
    return list(_KINDS.values())
