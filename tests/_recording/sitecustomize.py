"""Imported at start-up by every Python process a test starts while tests/compiled_users.txt is being
recorded (tests/conftest.py then puts this folder first on PYTHONPATH): such a process records itself
(compiled_users_recorder.py). Outside a recording this folder is never on the path."""

import os

if os.environ.get("HARNESS_RECORD_COMPILED_USERS"):
    import compiled_users_recorder

    compiled_users_recorder.install()
