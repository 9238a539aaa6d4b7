"""What each part of vae_course.fast saves: time per training step with the parts added one by one.

    python benchmarks/bench_steps.py [--rounds 10]

Eight configurations of the same VAE train 300 steps (19,200 MNIST images,
batch 64) in turns, round after round, in forward order in even rounds and
in reverse order in odd ones; the first round is a warm-up. Prints the
median milliseconds per step of each and its ratio to the first, paired
round by round (the number to read on a machine whose speed wanders):

1. Keras's own code: ``vae.fit``, every layer through ``Layer.__call__``, Keras's Adam;
2. + the encoder and decoder run as chains of torch calls, each Dense as one
   ``torch.addmm``, called directly in the steps
   (``vae_course.fast.enabled(vae, adam=False, draws=False, metrics=False, ops=False,
   weights=False)``);
3. + the steps' ``keras.random.normal`` drawn without Keras's per-call
   wrappers, the same numbers (``adam=False, metrics=False, ops=False, weights=False``);
4. + Keras's Adam update in PyTorch's fused kernel, ``optimizer.apply`` straight to it
   (``metrics=False, ops=False, weights=False``);
5. + the ELBO metrics updated and read with torch calls (``ops=False, weights=False``);
6. + the steps' ``keras.ops`` on float32 tensors as the torch calls Keras ends in
   (``weights=False``);
7. + the steps' weight lookups (``Variable.value``, ``trainable_weights``,
   ``zero_grad``) without Keras's and torch's walks (``enabled(vae)``, still in ``vae.fit``);
8. + ``vae_course.fast.fit``, Keras's loop without its per-batch ``DataLoader``:
   what ``train_vae`` runs.
"""

import argparse
import contextlib
import os
import statistics
import time

os.environ.setdefault("KERAS_BACKEND", "torch")

import keras

from vae_course import fast
from vae_course.data import load_mnist_float
from vae_course.models import build_vae


def main(argv=None):
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--rounds", type=int, default=10)
    args = ap.parse_args(argv)
    (x_train, _), _ = load_mnist_float()
    x = x_train[:19200]
    off = dict(adam=False, draws=False, metrics=False, ops=False, weights=False)
    parts = {
        "Keras's own code (Layer.__call__, Keras's Adam)": None,
        "+ networks as chains of torch calls": off,
        "+ direct random draws": dict(off, draws=True),
        "+ fused Adam": dict(off, draws=True, adam=True),
        "+ metrics as torch calls": dict(ops=False, weights=False),
        "+ keras.ops as torch calls": dict(weights=False),
        "+ weight lookups without the walks": {},
        "+ fast.fit, no DataLoader (train_vae's path)": {},
    }
    lean = "+ fast.fit, no DataLoader (train_vae's path)"
    vaes = {}
    for name in parts:
        keras.utils.set_random_seed(0)
        vaes[name] = build_vae()
        vaes[name].compile(optimizer=keras.optimizers.Adam(1e-3))
    times = {name: [] for name in parts}
    for r in range(args.rounds + 1):
        for name in list(parts) if r % 2 == 0 else list(reversed(parts)):  # alternate the order
            vae, on = vaes[name], parts[name]
            with contextlib.nullcontext() if on is None else fast.enabled(vae, **on):
                t = time.perf_counter()
                if name == lean:
                    fast.fit(
                        vae,
                        x,
                        epochs=1,
                        initial_epoch=0,
                        batch_size=64,
                        x_val=None,
                        callbacks=[],
                        verbose=0,
                    )
                else:
                    vae.fit(x, epochs=1, batch_size=64, verbose=0)
                if r:  # round 0 warms up
                    times[name].append((time.perf_counter() - t) / 300 * 1e3)
    base = times[next(iter(parts))]
    for name, ts in times.items():
        q = [a / b for a, b in zip(ts, base)]
        print(
            f"{name:<50} {statistics.median(ts):6.2f} ms/step, ratio to Keras's own code {statistics.median(q):.3f} "
            f"(rounds: {', '.join(f'{v:.2f}' for v in q)})"
        )


if __name__ == "__main__":
    main()
