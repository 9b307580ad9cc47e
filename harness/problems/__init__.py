"""Problems: a model, its parameters, initial states, observation times and data.

- `Problem` (`_problem.py`): the value every engine differentiates, with its loss;
- the catalogue (`_catalogue.py`): the tutorial's problem and its variants, by name;
- the problem-file format (`_file.py`): `.npz` files any tool can write and the harness loads.
"""

from ._catalogue import (
    PROBLEMS,
    STIFF_DECAY,
    TUTORIAL_DATA_OPTIONS,
    build_problem,
    deep_problem,
    make_problem,
    multi_time_problem,
    seed_problem,
    stiff_problem,
)
from ._file import load_problem, save_problem
from ._problem import Problem

__all__ = [
    "PROBLEMS",
    "STIFF_DECAY",
    "TUTORIAL_DATA_OPTIONS",
    "Problem",
    "build_problem",
    "deep_problem",
    "load_problem",
    "make_problem",
    "multi_time_problem",
    "save_problem",
    "seed_problem",
    "stiff_problem",
]
