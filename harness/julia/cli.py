"""The `harness julia setup` and `harness doctor` subcommands (wired in by harness/cli.py)."""

from __future__ import annotations

import argparse

from .environment import doctor_report, julia_status
from .install import run_setup


def _setup(args: argparse.Namespace) -> int:
    return run_setup(args.julia, force=args.force, check_network=not args.skip_network_check,
                     load_glue=not args.no_load)


def _doctor(args: argparse.Namespace) -> int:
    print(doctor_report(julia_status(run_julia=True)))
    return 0


def register(subparsers) -> None:
    """Add `julia setup` and `doctor` to an argparse subparsers object (each sets `func`)."""
    julia = subparsers.add_parser("julia", help="manage the Julia backend")
    commands = julia.add_subparsers(dest="julia_command", metavar="COMMAND", required=True)
    setup = commands.add_parser(
        "setup", help="install Julia and the packages of julia_env/juliapkg.json, and precompile",
    )
    setup.add_argument("--julia", metavar="PATH", help="use this Julia executable instead of downloading "
                       "one (sets PYTHON_JULIAPKG_EXE)")
    setup.add_argument("--force", action="store_true", help="re-resolve even if juliapkg thinks it is done")
    setup.add_argument("--skip-network-check", action="store_true",
                       help="do not check first that Julia's servers are reachable (e.g. behind a proxy)")
    setup.add_argument("--no-load", action="store_true", help="do not load the Julia glue after installing")
    setup.set_defaults(func=_setup)
    doctor = subparsers.add_parser("doctor", help="list the backends, whether each is available and why not")
    doctor.set_defaults(func=_doctor)
