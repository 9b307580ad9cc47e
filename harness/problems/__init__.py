"""Problems: a model, its parameters, initial states, observation times and data.

- `Problem` (`_problem.py`): the value every engine differentiates, with its loss;
- the catalogue (`_catalogue.py`): the tutorial's problem and its variants, by name;
- the problem-file format (`_file.py`): `.npz` files any tool can write and the harness loads;
- synthetic data (`_ground_truth.py`): a ground truth solved by the numpy path, whatever the compiled
  code's state.
"""

from ._catalogue import (
    PROBLEMS,
    STIFF_DECAY,
    TUTORIAL_DATA_OPTIONS,
    annuli_problem,
    augment_problem,
    augmented_problem,
    build_problem,
    deep_problem,
    irregular_problem,
    lotka_volterra_problem,
    make_problem,
    multi_time_problem,
    reflection_problem,
    seed_problem,
    stiff_problem,
    time_dependent_problem,
    ude_problem,
)
from ._file import load_problem, save_problem
from ._ground_truth import solve_ground_truth
from ._lynx_hare import SERIES, lynx_hare_problem, lynx_hare_series
from ._problem import Problem, grid_and_mask

__all__ = [
    "PROBLEMS",
    "SERIES",
    "STIFF_DECAY",
    "TUTORIAL_DATA_OPTIONS",
    "Problem",
    "annuli_problem",
    "augment_problem",
    "augmented_problem",
    "build_problem",
    "deep_problem",
    "grid_and_mask",
    "irregular_problem",
    "load_problem",
    "lynx_hare_problem",
    "lynx_hare_series",
    "lotka_volterra_problem",
    "make_problem",
    "multi_time_problem",
    "reflection_problem",
    "save_problem",
    "seed_problem",
    "solve_ground_truth",
    "stiff_problem",
    "time_dependent_problem",
    "ude_problem",
]
