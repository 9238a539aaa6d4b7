"""What each training-path change saves: time per step with the changes added one by one.

    python benchmarks/bench_steps.py [--rounds 10]

Four configurations of the same VAE train 300 steps (19,200 MNIST images,
batch 64) in turns, round after round; the first round is a warm-up. Prints
the median milliseconds per step of each:

1. every layer through Keras's ``Layer.__call__``, Keras's own Adam;
2. + the encoder and decoder as a chain of ``layer.call`` (``models.run_chain``);
3. + each Dense layer as one ``torch.addmm`` (``models._dense_addmm``);
4. + Keras's Adam update in PyTorch's fused kernel (``vae_course.optimizers.Adam``):
   the package as it is.
"""

import argparse
import os
import statistics
import time

os.environ.setdefault("KERAS_BACKEND", "torch")

import keras

import vae_course  # noqa: F401
from vae_course import models
from vae_course.data import load_mnist_float
from vae_course.models import build_vae
from vae_course.optimizers import Adam as FusedAdam


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=10)
    args = ap.parse_args(argv)
    (x_train, _), _ = load_mnist_float()
    x = x_train[:19200]
    run_chain, dense_addmm = models.run_chain, models._dense_addmm

    def through_call(model, chain, x):
        return model(x)

    def dense_call(layer, x):
        return layer.call(x)

    configs = {
        "Layer.__call__ everywhere, Keras's Adam": (through_call, dense_addmm, keras.optimizers.Adam),
        "+ layers called in a chain": (run_chain, dense_call, keras.optimizers.Adam),
        "+ each Dense as one torch.addmm": (run_chain, dense_addmm, keras.optimizers.Adam),
        "+ fused Adam (the package as it is)": (run_chain, dense_addmm, FusedAdam),
    }
    vaes = {}
    for name, (_, _, opt) in configs.items():
        keras.utils.set_random_seed(0)
        vaes[name] = build_vae()
        vaes[name].compile(optimizer=opt(1e-3))
    times = {name: [] for name in configs}
    try:
        for r in range(args.rounds + 1):
            for name, (chain_fn, dense_fn, _) in configs.items():
                models.run_chain, models._dense_addmm = chain_fn, dense_fn
                t = time.perf_counter()
                vaes[name].fit(x, epochs=1, batch_size=64, verbose=0)
                if r:  # round 0 warms up
                    times[name].append((time.perf_counter() - t) / 300 * 1e3)
    finally:
        models.run_chain, models._dense_addmm = run_chain, dense_addmm
    for name, ts in times.items():
        print(f"{name:<42} {statistics.median(ts):6.2f} ms/step   (rounds: {', '.join(f'{t:.2f}' for t in ts)})")


if __name__ == "__main__":
    main()
