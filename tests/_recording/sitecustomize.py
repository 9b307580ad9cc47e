"""Imported at start-up by every Python process a test starts while tests/compiled_users.txt is being
recorded (tests/conftest.py then puts this folder first on PYTHONPATH): if the process asks for the
compiled code, the test that started it (HARNESS_RECORDING_TEST, set by the conftest for each test) is
appended to the record file (HARNESS_RECORD_COMPILED_USERS). A test whose child process computes MLP
gradients (a CLI run, an example, a benchmark in a fixture) then counts as the test process's own
requests do. Outside a recording neither variable is set and this file is never on the path."""

import importlib.abc
import importlib.util
import os
import sys

_RECORD = os.environ.get("HARNESS_RECORD_COMPILED_USERS")
_TEST = os.environ.get("HARNESS_RECORDING_TEST")
# the module- and session-scoped fixtures being set up when this process started ("BASEID NAME;..."):
# the conftest writes every test that uses one of them in place of these lines
_FIXTURES = [f for f in os.environ.get("HARNESS_RECORDING_FIXTURES", "").split(";") if f]
_ASKING = ("_ready", "_load_kernels")  # what the conftest's in-process recorder wraps too


class _RecordWhenAsked(importlib.abc.MetaPathFinder):
    """Finds harness._compiled as usual, and wraps its two entry points once the module has run."""

    def find_spec(self, name, path=None, target=None):
        if name != "harness._compiled":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        run_module = spec.loader.exec_module

        def exec_module(module):
            run_module(module)
            for attribute in _ASKING:
                setattr(module, attribute, _recording(getattr(module, attribute)))

        spec.loader.exec_module = exec_module
        return spec


_recorded = []  # one line per process is enough


def _recording(function):
    def asking(*args, **kwargs):
        if not _recorded:
            _recorded.append(True)
            with open(_RECORD, "a") as record:
                record.write(_TEST + "\n" + "".join(f"fixture {f}\n" for f in _FIXTURES))
        return function(*args, **kwargs)
    return asking


if _RECORD and _TEST:
    sys.meta_path.insert(0, _RecordWhenAsked())
