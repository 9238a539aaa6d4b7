"""pytest's set-up for the whole repository (``pytest --nbval book/`` and ``pytest tests``).

The chapters' evaluations make tensors of tens to hundreds of MB, one after another (L_1000
and 1000-draw ELBOs of 100 images at a time). glibc's malloc gives any block above its
*mmap threshold* (at most 32 MB by default) back to the kernel when torch frees it, and the
pages of the next one are then faulted in and zeroed one 4 KiB page at a time, before any
arithmetic. On the course's 2-core CI machine, for 200 images under a 50-latent model of
chapter 9, L_1000 took 3.7 s that way and 1.4 s with the settings below; the ELBO from 1000
draws 3.8 s and 1.3 s.

So the kernels nbval starts, and any other process the tests start, inherit two settings of
glibc's malloc (read when a process starts; ignored by every other C library, so by macOS
and Windows): blocks up to 1 GiB come from the process's own heap, and up to 2 GiB of freed
memory at its top stays there for the next tensor. No number changes (the same kernels on
the same data); freed memory stays with a kernel until it ends. A value already in the
environment is kept.
"""

import os

for _name, _value in (
    ("MALLOC_MMAP_THRESHOLD_", "1073741824"),
    ("MALLOC_TRIM_THRESHOLD_", "2147483647"),
):
    os.environ.setdefault(_name, _value)
