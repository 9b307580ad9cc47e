"""The recorder of tests/compiled_users.txt, in the test process and in every Python process a test
starts (sitecustomize.py beside this file loads it there).

While the list is recorded (`HARNESS_RECORD_COMPILED_USERS=FILE python -m pytest -n 0 -q`),
tests/conftest.py keeps two variables current: HARNESS_RECORDING_TEST, the test running now, and
HARNESS_RECORDING_FIXTURES, the module- and session-scoped fixtures being set up now ("BASEID NAME;...").
Child processes inherit them. When a process asks for the compiled code, the test and one
"fixture BASEID NAME" line per such fixture are appended to FILE, once per test and fixtures. At the
session's end the conftest writes, in place of each fixture line, every test that uses that fixture:
whichever of them sets it up waits for the build.
"""

import importlib.abc
import importlib.util
import os
import sys

RECORD_VARIABLE = "HARNESS_RECORD_COMPILED_USERS"
TEST_VARIABLE = "HARNESS_RECORDING_TEST"
FIXTURES_VARIABLE = "HARNESS_RECORDING_FIXTURES"
FIXTURE_LINE, FIXTURE_SEPARATOR, FIXTURE_FIELD = "fixture ", ";", " "
ASKING = ("_ready", "_load_kernels")  # the two ways a process asks for the compiled code

_recorded = set()  # (test, fixtures) already written by this process


def wrap(module) -> None:
    """Record every call of `module`'s (harness._compiled's) two entry points from now on."""
    for attribute in ASKING:
        setattr(module, attribute, _recording(getattr(module, attribute)))


def _recording(function):
    def asking(*args, **kwargs):
        test, fixtures = os.environ.get(TEST_VARIABLE), os.environ.get(FIXTURES_VARIABLE, "")
        if test and (test, fixtures) not in _recorded:
            _recorded.add((test, fixtures))
            lines = [test] + [FIXTURE_LINE + f for f in fixtures.split(FIXTURE_SEPARATOR) if f]
            with open(os.environ[RECORD_VARIABLE], "a") as record:
                record.write("".join(line + "\n" for line in lines))
        return function(*args, **kwargs)
    return asking


class _WrapOnImport(importlib.abc.MetaPathFinder):
    """Finds harness._compiled as usual, and wraps its entry points once the module has run."""

    def find_spec(self, name, path=None, target=None):
        if name != "harness._compiled":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        run_module = spec.loader.exec_module

        def exec_module(module):
            run_module(module)
            wrap(module)

        spec.loader.exec_module = exec_module
        return spec


def install() -> None:
    """Wrap harness._compiled in this process, now if it is imported, else when it is."""
    if "harness._compiled" in sys.modules:
        wrap(sys.modules["harness._compiled"])
    else:
        sys.meta_path.insert(0, _WrapOnImport())
