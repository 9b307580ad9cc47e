"""`harness compare --workers/--scheduler`: option checks that need no Dask installed."""

import argparse
import importlib.util

import pytest

from harness.compare import cli
from harness.errors import HarnessInputError


def _parse(*argv):
    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers())
    return parser.parse_args(["compare", "x.toml", *argv])


def test_one_worker_runs_in_process():
    args = _parse()
    assert (args.workers, args.scheduler) == (1, None)
    assert cli._executor(args.workers, args.scheduler) is None
    assert cli._executor(1, None) is None  # --workers 1: exactly the in-process path


@pytest.mark.parametrize("argv", [["--workers", "0"], ["--workers", "two"],
                                  ["--workers", "2", "--scheduler", "tcp://127.0.0.1:8786"]])
def test_bad_options_are_rejected(argv, capsys):
    with pytest.raises(SystemExit):
        _parse(*argv)
    assert "--workers" in capsys.readouterr().err


@pytest.mark.parametrize("workers, scheduler, option", [(2, None, "--workers 2"),
                                                        (1, "tcp://127.0.0.1:8786", "--scheduler")])
def test_without_the_dask_extra_a_one_line_error(monkeypatch, workers, scheduler, option):
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "distributed" else find_spec(name, *a))
    with pytest.raises(HarnessInputError, match=r'pip install -e "\.\[dask\]"') as info:
        cli._executor(workers, scheduler)
    assert option in str(info.value) and "\n" not in str(info.value)
