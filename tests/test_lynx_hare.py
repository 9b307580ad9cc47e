"""The lynx-hare problem (harness/problems/_lynx_hare.py) against the shipped CSV read independently
(the standard library's csv module): years, counts, the units (100 000 pelts), which years are fitted,
the first year as z0, the model and its draw, and the one-line refusals."""

from __future__ import annotations

import csv
from importlib import resources

import numpy as np
import pytest

from harness.errors import HarnessInputError
from harness.models import LotkaVolterra
from harness.problems._lynx_hare import SERIES, SPECIES, lynx_hare_problem, lynx_hare_series


@pytest.fixture(scope="module")
def table():
    text = resources.files("harness.problems").joinpath("data/hudson_bay_lynx_hare.csv").read_text()
    rows = list(csv.reader(text.splitlines()))
    assert rows[0] == ["year", "hare", "lynx"]
    return [(int(y), float(h), float(lx)) for y, h, lx in rows[1:]]


def test_the_series_is_the_csv_years_and_counts(table):
    years, pelts = lynx_hare_series()
    assert years.tolist() == [y for y, _, _ in table] == list(range(1900, 1921))
    assert pelts.shape == (21, 2)
    assert pelts.tolist() == [[h, lx] for _, h, lx in table]
    assert pelts[0].tolist() == [30.0, 4.0]  # 1900: 30 000 hare pelts, 4 000 lynx


def test_the_problem_fits_the_years_to_1915_in_hundreds_of_thousands(table):
    problem = lynx_hare_problem()
    assert problem.name == "lynx_hare_1900_1915"
    np.testing.assert_array_equal(problem.z0, [[table[0][1] / 100, table[0][2] / 100]])
    assert problem.t0 == 0.0 and problem.times.tolist() == [float(k) for k in range(1, 16)]
    expected = np.array([[[h / 100, lx / 100]] for y, h, lx in table if 1901 <= y <= 1915])
    np.testing.assert_allclose(problem.data, expected, rtol=1e-15)  # x 0.01 against / 100: an ulp
    assert problem.data.shape == (15, 1, 2) and problem.mask is None


def test_the_default_model_is_lotka_volterra_drawn_from_seed_plus_one():
    problem = lynx_hare_problem(seed=4)
    assert isinstance(problem.model, LotkaVolterra)
    reference = LotkaVolterra(init_theta=(0.5, 2.5, 0.8, 2.5))
    np.testing.assert_array_equal(problem.theta, reference.init(np.random.default_rng(5)))
    assert np.all(np.abs(problem.theta / np.array([0.5, 2.5, 0.8, 2.5]) - 1) < 0.5)  # around the published fits
    assert not np.array_equal(lynx_hare_problem(seed=5).theta, problem.theta)
    mine = LotkaVolterra()
    assert lynx_hare_problem(model=mine).model is mine


@pytest.mark.parametrize("last_year, n_times", [(1901, 1), (1920, 20)])
def test_any_last_year_after_the_first_is_fitted(last_year, n_times):
    problem = lynx_hare_problem(last_year=last_year)
    assert problem.times.tolist() == [float(k) for k in range(1, n_times + 1)]
    assert problem.name == f"lynx_hare_1900_{last_year}"


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"last_year": 1900}, "last_year=1900: expected a year in 1901..1920"),
        ({"last_year": 1921}, "last_year=1921: expected a year in 1901..1920"),
        ({"batch": 2}, "batch=2: the lynx-hare data are one trajectory, expected batch = 1"),
    ],
)
def test_refusals_are_one_line(kwargs, message):
    with pytest.raises(HarnessInputError) as err:
        lynx_hare_problem(**kwargs)
    assert str(err.value) == message


def test_the_series_entry_names_its_loader_units_and_columns():
    entry = SERIES["lynx_hare"]
    assert entry["load"] is lynx_hare_series and entry["scale"] == 0.01
    assert entry["names"] == SPECIES == ("hare", "lynx")
    assert (entry["units"], entry["model_units"]) == ("thousands of pelts", "hundreds of thousands of pelts")


def test_the_default_draw_is_seed_0s():
    np.testing.assert_array_equal(lynx_hare_problem().theta, lynx_hare_problem(seed=0).theta)
