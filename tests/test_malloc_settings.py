"""The malloc settings the repository's conftest.py hands to every process the tests start.

conftest.py sets glibc's ``MALLOC_MMAP_THRESHOLD_`` and ``MALLOC_TRIM_THRESHOLD_`` so that the
chapters' large tensors reuse freed memory instead of faulting in fresh pages. These tests check
that they are in the environment that child processes (nbval's kernels among them) inherit, and
that they do what conftest.py says: the same work, run again, faults in far fewer pages and
gives the same numbers. Where the C library does not take the settings, conftest.py leaves them
out and these tests skip.
"""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

spec = importlib.util.spec_from_file_location(
    "root_conftest", Path(__file__).resolve().parents[1] / "conftest.py"
)
root_conftest = importlib.util.module_from_spec(spec)
spec.loader.exec_module(root_conftest)
NAMES = tuple(root_conftest.MALLOC_SETTINGS)

pytestmark = pytest.mark.skipif(
    not root_conftest.glibc_takes_the_settings(),
    reason="the C library is not a glibc that accepts a 1 GiB mmap threshold; conftest.py "
    "leaves malloc alone",
)

# A decoder-shaped pass over 20000 rows (its activations and logits 40 and 63 MB), five times;
# prints the minor page faults of passes 2-5 (the first pass maps the memory in either case)
# and the exact sum of every pass's result.
WORK = """
import resource, torch
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
torch.manual_seed(0)
w1, w2 = torch.randn(50, 512), torch.randn(512, 784)
counts, sums = [], []
for _ in range(5):
    before = faults()
    h = torch.tanh(torch.randn(20000, 50) @ w1)
    logits = h @ w2
    nll = (torch.relu(logits) + torch.log1p(torch.exp(-logits.abs()))).sum(1)
    sums.append(nll.double().sum().item())
    del h, logits, nll
    counts.append(faults() - before)
print(sum(counts[1:]), repr(sums))
"""


def run_work(env):
    out = subprocess.run(
        [sys.executable, "-c", WORK], env=env, capture_output=True, text=True, check=True
    )
    faults, sums = out.stdout.strip().split(" ", 1)
    return int(faults), sums


def test_conftest_set_the_settings():
    """conftest.py's pytest_configure put both settings in the environment children inherit.

    Loading conftest.py above only defines its functions, so this fails under ``--noconftest``
    or if pytest_configure stops setting them (a value set before pytest started is kept).
    """
    assert all(os.environ.get(n) for n in NAMES)


def test_repeated_large_tensors_fault_in_fewer_pages_and_give_the_same_numbers():
    with_settings = dict(os.environ)
    without = {k: v for k, v in os.environ.items() if k not in NAMES}
    (on, sums_on), (off, sums_off) = run_work(with_settings), run_work(without)
    # measured: 45 000 to 107 000 with the settings, 510 000 without (three tries)
    assert on < 0.5 * off, (on, off)
    # a weak guard (torch aligns its buffers the same way wherever malloc puts them); the strong
    # one is nbval: outputs stored without the settings, compared in runs with them
    assert sums_on == sums_off
