"""Re-execute chapters in place, so that their stored outputs are what nbval will check.

Runs each notebook top to bottom in a fresh kernel from the book/ folder (as
nbval does), with a 20-minute limit per cell, and writes it back only if
every cell succeeded: a failed run leaves the file as it was.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository's vae_course, without installing it


def execute(path: str) -> None:
    import nbformat
    from nbclient import NotebookClient

    from vae_course.tools.atomic import atomic_write_text

    nb = nbformat.read(path, as_version=4)
    start = time.time()
    client = NotebookClient(
        nb,
        timeout=1200,
        kernel_name="python3",
        resources={"metadata": {"path": os.path.dirname(os.path.abspath(path))}},
    )
    client.execute()
    text = nbformat.writes(nb)
    atomic_write_text(path, text if text.endswith("\n") else text + "\n")
    print(f"{path}: executed in {time.time() - start:.1f} s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python scripts/execute_notebooks.py",
        description=__doc__,
        epilog="example: python scripts/execute_notebooks.py book/06_mnist_vae.ipynb",
    )
    parser.add_argument("notebooks", nargs="+", metavar="NOTEBOOK", help="the .ipynb files to re-execute")
    args = parser.parse_args(argv)
    for path in args.notebooks:
        execute(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
