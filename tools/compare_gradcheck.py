"""Compare two `harness gradcheck --json` outputs row by row: every field except the wall time.

Usage: python tools/compare_gradcheck.py OLD.json NEW.json   (exit status 1 if any row differs)

The gradients (`theta_grad`), relative errors, bounds, statuses and evaluation counts must be
identical, bit for bit; `seconds` is a measurement and is left out.
"""

from __future__ import annotations

import json
import sys


def main(old_path: str, new_path: str) -> int:
    with open(old_path) as handle:
        old = json.load(handle)
    with open(new_path) as handle:
        new = json.load(handle)
    header = [key for key in set(old) | set(new) if key != "engines" and old.get(key) != new.get(key)]
    if header or len(old["engines"]) != len(new["engines"]):
        print(f"the reports differ in {header or 'their number of rows'}")
        return 1
    differ = 0
    for a, b in zip(old["engines"], new["engines"]):
        fields = sorted(key for key in set(a) | set(b) if key != "seconds" and a.get(key) != b.get(key))
        if fields:
            differ += 1
            print(f"{a['problem']} {a['name']}: differs in {fields}")
    print(f"{len(old['engines'])} rows, {differ} differ (every field but 'seconds' compared for exact equality)")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
