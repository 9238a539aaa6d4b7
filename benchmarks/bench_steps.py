"""What each part of vae_course.fast saves: time per training step with the parts added one by one.

    python benchmarks/bench_steps.py [--rounds 10]

Five configurations of the same VAE train 300 steps (19,200 MNIST images,
batch 64) in turns, round after round, in forward order in even rounds and
in reverse order in odd ones; the first round is a warm-up. Prints the
median milliseconds per step of each and its ratio to the first, paired
round by round (the number to read on a machine whose speed wanders):

1. Keras's own code: every layer through ``Layer.__call__``, Keras's Adam;
2. + the encoder and decoder run as chains of torch calls, each Dense as one
   ``torch.addmm``, called directly in the steps
   (``vae_course.fast.enabled(vae, adam=False, draws=False)``);
3. + the steps' ``keras.random.normal`` drawn without Keras's per-call
   wrappers, the same numbers (``enabled(vae, adam=False)``);
4. + Keras's Adam update in PyTorch's fused kernel, ``optimizer.apply`` straight to it
   (``enabled(vae, metrics=False)``);
5. + the ELBO metrics updated and read with torch calls: what ``train_vae`` runs.
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
    configs = {
        "Keras's own code (Layer.__call__, Keras's Adam)": lambda vae: contextlib.nullcontext(),
        "+ networks as chains of torch calls": lambda vae: fast.enabled(
            vae, adam=False, draws=False
        ),
        "+ direct random draws": lambda vae: fast.enabled(vae, adam=False),
        "+ fused Adam": lambda vae: fast.enabled(vae, metrics=False),
        "+ metrics as torch calls (train_vae's path)": fast.enabled,
    }
    vaes = {}
    for name in configs:
        keras.utils.set_random_seed(0)
        vaes[name] = build_vae()
        vaes[name].compile(optimizer=keras.optimizers.Adam(1e-3))
    times = {name: [] for name in configs}
    for r in range(args.rounds + 1):
        for name in list(configs) if r % 2 == 0 else list(reversed(configs)):  # alternate the order
            switch = configs[name]
            with switch(vaes[name]):
                t = time.perf_counter()
                vaes[name].fit(x, epochs=1, batch_size=64, verbose=0)
                if r:  # round 0 warms up
                    times[name].append((time.perf_counter() - t) / 300 * 1e3)
    base = times[next(iter(configs))]
    for name, ts in times.items():
        q = [a / b for a, b in zip(ts, base)]
        print(
            f"{name:<48} {statistics.median(ts):6.2f} ms/step, ratio to Keras's own code {statistics.median(q):.3f} "
            f"(rounds: {', '.join(f'{v:.2f}' for v in q)})"
        )


if __name__ == "__main__":
    main()
