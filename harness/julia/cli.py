"""The `harness julia setup`, `harness julia selftest` and `harness doctor` subcommands (wired in by
harness/cli.py)."""

from __future__ import annotations

import argparse

from .environment import doctor_report, julia_status
from .install import run_setup


def _setup(args: argparse.Namespace) -> int:
    return run_setup(args.julia, force=args.force, check_network=not args.skip_network_check,
                     load_glue=not args.no_load)


def _selftest(args: argparse.Namespace) -> int:
    from .._io import to_json  # noqa: PLC0415
    from . import selftest  # noqa: PLC0415

    selftest.require_julia()
    rows = selftest.plan(args.quick)
    if not args.json:
        n_rows = sum(len(engines) for _, engines in rows)
        print(f"{n_rows} rows in {len(rows)} cases; expected run time about "
              f"{selftest.expected_seconds(rows) / 60:.0f} min (an estimate; the first run after an "
              "install also compiles)\n", flush=True)
    echo = None if args.json else (lambda case: print(selftest.format_case(case) + "\n", flush=True))
    cases = selftest.run_selftest(tol=args.tol, quick=args.quick, progress=echo)
    report = selftest.cases_to_json(cases, args.tol)
    if args.json:
        print(to_json(report))
    else:
        bad = [r for r in report["rows"] if not r["ok"]]
        print(f"all {len(report['rows'])} Julia rows passed" if not bad else
              f"{len(bad)} of {len(report['rows'])} Julia rows failed: "
              + ", ".join(r["name"] for r in bad))
    return 0 if report["ok"] else 1


def _doctor(args: argparse.Namespace) -> int:
    if args.rebuild:
        from .._compiled import rebuild  # noqa: PLC0415

        rebuild()
    print(doctor_report(julia_status(run_julia=True)))
    return 0


def register(subparsers) -> None:
    """Add `julia setup` and `doctor` to an argparse subparsers object (each sets `func`)."""
    julia = subparsers.add_parser("julia", help="manage the Julia backend")
    commands = julia.add_subparsers(dest="julia_command", metavar="COMMAND", required=True)
    setup = commands.add_parser(
        "setup", help="install Julia and the packages of harness/juliapkg.json, and precompile",
    )
    setup.add_argument("--julia", metavar="PATH", help="use this Julia executable instead of downloading "
                       "one (sets PYTHON_JULIAPKG_EXE)")
    setup.add_argument("--force", action="store_true", help="re-resolve even if juliapkg thinks it is done")
    setup.add_argument("--skip-network-check", action="store_true",
                       help="do not check first that Julia's servers are reachable (e.g. behind a proxy)")
    setup.add_argument("--no-load", action="store_true", help="do not load the Julia glue after installing")
    setup.set_defaults(func=_setup)
    selftest = commands.add_parser(
        "selftest", help="every route, sensitivity algorithm and solver family on small problems, dL/dθ and "
                         "dL/dz0 against the Python reference (exit 1 if any row fails, 2 if Julia is "
                         "unavailable)",
    )
    from ..cli import positive_float  # noqa: PLC0415  (harness.cli calls register once it is loaded)

    selftest.add_argument("--tol", type=positive_float, default=1e-8,
                          help="rtol = atol of the Julia engines (default 1e-8; the bounds scale with it)")
    selftest.add_argument("--quick", action="store_true",
                          help="one row per solver family and the non-MLP model (about a minute)")
    selftest.add_argument("--json", action="store_true", help="print one JSON object")
    selftest.set_defaults(func=_selftest)
    doctor = subparsers.add_parser("doctor", help="list the backends, whether each is available and why not")
    doctor.add_argument("--rebuild", action="store_true",
                        help="build the compiled code again now, waiting for it (a remembered failure included)")
    doctor.set_defaults(func=_doctor)
