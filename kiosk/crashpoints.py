"""``kiosk bench crashpoints``: SIGKILL the daemon right before and right after every durable
step of each journey, restart it, let recovery finish, and check the money invariants.

(Work in progress: the harness is being written.)
"""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--journey", action="append", help="run only this journey (repeatable)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")


def main(args: argparse.Namespace) -> int:
    print("kiosk bench crashpoints: not built yet")
    return 2
