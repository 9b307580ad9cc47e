"""Real data: Hudson's Bay Company hare and lynx pelts, 1900-1920 (`data/hudson_bay_lynx_hare.csv`).

The provenance (two copies compared, their sources) is `data/hudson_bay_lynx_hare.md`. The problem
below fits the years up to `last_year` in units of 100 000 pelts (`SCALE` = 0.01 per thousand), where
both species are below 1, in the range where a tanh network's units are not saturated: one
trajectory (B = 1), t in years since 1900, z0 the first year's counts (an estimate; a fit may move
it), data the years after.
"""

from __future__ import annotations

from importlib import resources

import numpy as np

from ..errors import HarnessInputError
from ._problem import Problem

SCALE = 0.01  # model units per thousand pelts: hundreds of thousands (hare 0.08-0.77, lynx 0.04-0.59)
SPECIES = ("hare", "lynx")


def lynx_hare_series() -> tuple[np.ndarray, np.ndarray]:
    """(years (21,), pelts in thousands (21, 2) as [hare, lynx]) for 1900-1920, from the shipped CSV."""
    text = resources.files("harness.problems").joinpath("data/hudson_bay_lynx_hare.csv").read_text()
    table = np.loadtxt(text.splitlines(), delimiter=",", skiprows=1)
    return table[:, 0], table[:, 1:3]


def lynx_hare_problem(seed: int = 0, batch: int = 1, data_options=None, model=None, last_year: int = 1915) -> Problem:
    """The hare and lynx counts of 1900-`last_year` as a `Problem`, in units of 100 000 pelts.

    model : default `LotkaVolterra` with θ drawn around (α, β, γ, δ) = (0.5, 2.5, 0.8, 2.5) /yr
        (10 % spread, seed + 1), the order of magnitude of published fits of these data.
    batch : must be 1 (the data are one trajectory); accepted so that the catalogue can pass it.
    """
    if batch != 1:
        raise HarnessInputError(f"batch={batch}: the lynx-hare data are one trajectory, expected batch = 1")
    from ..models import LotkaVolterra

    years, pelts = lynx_hare_series()
    if not years[0] < last_year <= years[-1]:
        raise HarnessInputError(f"last_year={last_year}: expected a year in {int(years[0]) + 1}..{int(years[-1])}")
    model = LotkaVolterra(init_theta=(0.5, 2.5, 0.8, 2.5)) if model is None else model
    z = pelts * SCALE
    fit = years <= last_year
    t = years[fit] - years[0]
    theta = model.init(np.random.default_rng(seed + 1))
    return Problem(model, theta, z[:1], 0.0, t[1:], z[fit][1:, None, :], f"lynx_hare_{int(years[0])}_{last_year}")


# Real series the `fits` experiment kind can name ([fits] series = "lynx_hare"): how to load it,
# the model units (value x scale) and what its columns are.
SERIES = {
    "lynx_hare": {"load": lynx_hare_series, "scale": SCALE, "units": "thousands of pelts",
                  "model_units": "hundreds of thousands of pelts", "names": SPECIES},
}
