"""pytest's set-up for the whole repository (``pytest --nbval book/`` and ``pytest tests``).

The chapters' evaluations make tensors of tens to hundreds of MB, one after another (L_1000
and 1000-draw ELBOs of 100 images at a time). glibc's malloc gives any block above its
*mmap threshold* (at most 32 MiB by default) back to the operating system when torch frees
it, so the next such tensor starts on fresh pages, which the operating system faults in and
zeroes as the operation first writes them (4 KiB pages where transparent huge pages are not
in use). On the course's 2-core CI machine, for 200 images under a 50-latent model of chapter 9,
L_1000 took 3.7 s that way and 1.4 s with the settings below; the ELBO from 1000 draws 3.8 s
and 1.3 s.

So the Jupyter kernels nbval starts, and any other process the tests start, inherit two
settings of glibc's malloc, read when a process starts: blocks up to 1 GiB come from the
main thread's heap (where the chapters' cells allocate), and up to 2 GiB of freed memory at
its top stays there for the next tensor. Freed memory then stays with a Jupyter kernel until
it ends (the largest process's peak in a pair of runs of chapter 9 grew from 2.5 to 4.3 GB,
and from 2.4 to 4.6 GB in a second pair). Every output nbval compares, and every
assert, came out the same with them.

glibc 2.36 (the CI machine's) accepts a 1 GiB threshold; some older releases refuse any
above 32 MiB (``HEAP_MAX_SIZE / 2``) and would keep only the trim setting, which, set, stops
the threshold's own adjustment and leaves it at 128 KiB.
So the settings are made only where a child process's ``mallopt`` accepts the threshold;
other C libraries (musl, macOS's, Windows') have no ``mallopt`` or ignore the variables. A
value already in the environment is kept.
"""

import os
import subprocess
import sys

MALLOC_SETTINGS = {"MALLOC_MMAP_THRESHOLD_": "1073741824", "MALLOC_TRIM_THRESHOLD_": "2147483647"}

# mallopt(M_MMAP_THRESHOLD = -3, 1 GiB) returns 1 where glibc accepts it, 0 where it refuses.
_PROBE = (
    "import ctypes, platform; "
    "ok = platform.system() == 'Linux' and platform.libc_ver()[0] == 'glibc' "
    "and ctypes.CDLL(None).mallopt(-3, 1 << 30) == 1; print(int(ok))"
)


def glibc_takes_the_settings():
    """True where the C library is glibc and it accepts a 1 GiB mmap threshold (in a child)."""
    try:
        out = subprocess.run(
            [sys.executable, "-c", _PROBE], capture_output=True, text=True, timeout=60
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return out.returncode == 0 and out.stdout.strip() == "1"


def apply_malloc_settings():
    """Put MALLOC_SETTINGS in this process's environment (for its children) where glibc takes them."""
    if glibc_takes_the_settings():
        for name, value in MALLOC_SETTINGS.items():
            os.environ.setdefault(name, value)


def pytest_configure(config):
    apply_malloc_settings()
