"""benchmarks/bench_memory.py measures what it says: each row its own fresh process, and ru_maxrss not
inflated by the launcher (Linux carries a process's ru_maxrss across exec, so a launcher that had
imported numpy would lift every row to its own size)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_rows_are_fresh_processes_and_both_measures_agree():
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_memory.py"), "--json", "--repeats", "1", "--no-cold",
         "--no-reproduce", "--rows", "1", "2"],
        capture_output=True, text=True, cwd=ROOT, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    bare, numpy_scipy = json.loads(proc.stdout)["rows"]
    assert bare["label"].startswith("python") and numpy_scipy["label"] == "import numpy, scipy"
    # numpy's and scipy's shared libraries alone are several MB resident; a row that reused a process,
    # or a measure that missed them, would show less
    assert numpy_scipy["hwm_mb"] > bare["hwm_mb"] + 5, (bare, numpy_scipy)
    assert numpy_scipy["modules"] > bare["modules"] + 50
    for row in (bare, numpy_scipy):
        # the two measures of one process: equal up to page-accounting granularity (measured within
        # 0.3 MB); a launcher holding numpy (about 25 MB) would put ru_maxrss far above VmHWM here
        assert abs(row["maxrss_mb"] - row["hwm_mb"]) < 2.0, row
