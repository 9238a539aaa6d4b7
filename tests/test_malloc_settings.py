"""The malloc settings the repository's conftest.py hands to every process the tests start.

conftest.py sets glibc's ``MALLOC_MMAP_THRESHOLD_`` and ``MALLOC_TRIM_THRESHOLD_`` so that the
chapters' large tensors reuse freed memory instead of faulting in fresh pages. These tests check
that they are in the environment that child processes (nbval's kernels among them) inherit, and
that they do what conftest.py says: the same work, run again, faults in far fewer pages.
"""

import os
import platform
import subprocess
import sys

import pytest

GLIBC = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"
NAMES = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")

# A decoder-shaped pass over 20000 rows (tensors of 40-63 MB), five times; prints the minor page
# faults of passes 2-5 (the first pass maps the memory in either case).
WORK = """
import resource, torch
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
torch.manual_seed(0)
w1, w2 = torch.randn(50, 512), torch.randn(512, 784)
counts = []
for _ in range(5):
    before = faults()
    h = torch.tanh(torch.randn(20000, 50) @ w1)
    logits = h @ w2
    nll = (torch.relu(logits) + torch.log1p(torch.exp(-logits.abs()))).sum(1)
    del h, logits, nll
    counts.append(faults() - before)
print(sum(counts[1:]))
"""


def run_work(env):
    out = subprocess.run(
        [sys.executable, "-c", WORK], env=env, capture_output=True, text=True, check=True
    )
    return int(out.stdout.split()[-1])


def test_conftest_set_the_settings():
    """Sanity check: conftest.py ran and put both settings in the environment children inherit."""
    assert all(os.environ.get(n) for n in NAMES), "conftest.py did not set the malloc settings"


@pytest.mark.skipif(not GLIBC, reason="the settings are glibc's; other C libraries ignore them")
def test_repeated_large_tensors_fault_in_fewer_pages_with_the_settings():
    with_settings = dict(os.environ)
    without = {k: v for k, v in os.environ.items() if k not in NAMES}
    on, off = run_work(with_settings), run_work(without)
    # measured: about 120 000 with the settings, 380 000 without
    assert on < 0.5 * off, (on, off)
