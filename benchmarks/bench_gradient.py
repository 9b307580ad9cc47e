"""One seed-problem gradient per engine against the plain scipy baseline, in one run.

Usage: python benchmarks/bench_gradient.py [--repeats N] [--json]
"""

import sys

from harness.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", *sys.argv[1:]]))
