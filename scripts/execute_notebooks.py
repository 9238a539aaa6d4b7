"""Re-execute chapters in place, so their stored outputs are what nbval will check.

    python scripts/execute_notebooks.py book/01_monte_carlo.ipynb [more.ipynb ...]

Runs each notebook top to bottom in a fresh kernel from the book/ folder (as
nbval does), with a 20-minute limit per cell, and writes it back only if
every cell succeeded: a failed run leaves the file as it was.
"""
import os
import sys
import time

import nbformat
from nbclient import NotebookClient

from vae_course.checkpoints import atomic_write_text


def execute(path):
    nb = nbformat.read(path, as_version=4)
    start = time.time()
    client = NotebookClient(
        nb, timeout=1200, kernel_name="python3",
        resources={"metadata": {"path": os.path.dirname(os.path.abspath(path))}},
    )
    client.execute()
    text = nbformat.writes(nb)
    atomic_write_text(path, text if text.endswith("\n") else text + "\n")
    print(f"{path}: executed in {time.time() - start:.1f} s")


if __name__ == "__main__":
    for p in sys.argv[1:]:
        execute(p)
