"""What the command line's commands do (``vae_course.tools.cli`` parses the arguments and calls these).

Each command takes the parsed ``argparse.Namespace``, prints what it did and
returns the exit status; bad input raises a :class:`vae_course.errors.CourseError`.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import keras
import matplotlib.pyplot as plt
import numpy as np
import torch

from .. import plots, train
from ..data import binarize, default_data_dir, load_mnist, scale_images
from ..defaults import DEFAULTS
from ..errors import DataError
from ..evaluate import iwae_bound, negative_elbo
from ..models import VAE, build_vae
from ..montecarlo import mean_and_se
from . import atomic, callbacks, checkpoints
from .fetch import fetch_mnist

PLOTS = {
    "history": "loss_curves.png",
    "samples": "prior_samples.png",
    "latent": "latent_scatter.png",
    "manifold": "manifold.png",
}
# Training settings a checkpoint records and `train --resume` takes back.
SETTINGS = ("batch_size", "learning_rate", "seed", "limit", "val_limit")


# -------------------------------------------------------------------- fetch-data
def fetch_data(args: argparse.Namespace) -> int:
    dest = Path(args.dest) if args.dest is not None else default_data_dir()
    print(
        f"MNIST: the four IDX files (train and test images and labels) go into {dest}", flush=True
    )
    path = fetch_mnist(dest, log=lambda message: print(message, flush=True))
    print(f"MNIST IDX files are in {path}")
    return 0


# ------------------------------------------------------------------------- train
def train_command(args: argparse.Namespace) -> int:
    if args.out is None and args.resume is None:
        raise DataError(
            "train: no output folder. Fix: pass --out DIR (a new run) or --resume DIR (go on from DIR/model.keras)."
        )
    given = {k: getattr(args, k) for k in SETTINGS if getattr(args, k) is not None}
    defaults = {k: getattr(DEFAULTS, k, None) for k in SETTINGS}
    if args.resume is not None:
        vae, ckpt, epochs_done, settings, rows = _resume(args, defaults, given)
    else:
        vae, ckpt, epochs_done, settings, rows = None, None, 0, {**defaults, **given}, []
    out = Path(args.out) if args.out is not None else ckpt.parent
    same_dir = ckpt is not None and out.resolve() == ckpt.parent.resolve()
    if not same_dir and (out / checkpoints.CHECKPOINT_NAME).exists() and not args.overwrite:
        raise DataError(
            f"--out {out}: it already holds {checkpoints.CHECKPOINT_NAME} from an earlier run, which is kept. Fix: "
            f"go on from it with `train --resume {out}`, replace it with --overwrite, or choose another --out."
        )
    likelihood = vae.likelihood if vae is not None else (args.likelihood or DEFAULTS.likelihood)
    latent_dim = vae.latent_dim if vae is not None else (args.latent_dim or DEFAULTS.latent_dim)

    (x_train, _), (x_test, y_test) = _mnist(args.data_dir)
    x_test, y_test = x_test[: settings["val_limit"]], y_test[: settings["val_limit"]]
    # Training images stay grey: with the Bernoulli likelihood every epoch binarizes them afresh
    # (dynamic binarization, chapter 7; one fixed binarization over-fits its draws).
    x_train = _prepare(x_train[: settings["limit"]], likelihood, settings["seed"], binarized=False)
    x_val = _prepare(x_test, likelihood, settings["seed"] + 1)
    if vae is None:
        keras.utils.set_random_seed(
            settings["seed"]
        )  # before building: the initial weights are seeded too
        vae = build_vae(latent_dim=latent_dim, likelihood=likelihood)
    print(
        f"training on {len(x_train)} images, validating on {len(x_val)}; {likelihood} likelihood, "
        f"latent_dim {latent_dim}, batch {settings['batch_size']}, Adam lr {settings['learning_rate']:g}, "
        f"seed {settings['seed']}; writing to {out}",
        flush=True,
    )
    state = {"settings": settings, "likelihood": likelihood, "latent_dim": latent_dim}
    run_callbacks, stop = callbacks.training_callbacks(
        out, rows, state=state, total_epochs=epochs_done + args.epochs
    )
    fit = train.train_vae_dynamic if likelihood == "bernoulli" else train.train_vae
    fit(
        vae,
        x_train,
        x_val,
        epochs=args.epochs,
        batch_size=settings["batch_size"],
        learning_rate=settings["learning_rate"],
        seed=settings["seed"]
        + epochs_done,  # a resumed run does not replay the first run's random draws
        callbacks=run_callbacks,
        verbose=1 if sys.stdout.isatty() else 2,
        initial_epoch=epochs_done,
    )
    if stop.stopped:
        raise stop.error(
            out / checkpoints.CHECKPOINT_NAME, epochs_before=epochs_done if same_dir else 0
        )
    written = [out / checkpoints.CHECKPOINT_NAME, out / checkpoints.HISTORY_NAME]
    written += _training_plots(vae, out, x_val, y_test, settings["seed"])
    print("wrote " + ", ".join(str(p) for p in written))
    return 0


def _resume(args, defaults, given):
    """The checkpoint of ``--resume`` and the settings to go on with: (vae, ckpt, epochs_done, settings, rows)."""
    vae, ckpt, epochs_done, recorded, rows = checkpoints.resume_state(args.resume)
    for name, value, have in (
        ("--latent-dim", args.latent_dim, vae.latent_dim),
        ("--likelihood", args.likelihood, vae.likelihood),
    ):
        if value is not None and value != have:
            raise DataError(
                f"{name} {value}: the checkpoint {ckpt} was trained with {have}. Fix: drop {name} when "
                "resuming, or start a new run with --out."
            )
    settings = {**defaults, **recorded, **given}
    if len(rows) < epochs_done:
        history = ckpt.with_name(checkpoints.HISTORY_NAME)
        print(f"note: {history} has {len(rows)} of the {epochs_done} epochs done.", file=sys.stderr)
    print(
        f"resuming {ckpt} after {epochs_done} epochs ({vae.likelihood}, latent_dim {vae.latent_dim})"
    )
    return vae, ckpt, epochs_done, settings, rows


def _training_plots(vae, out, x_val, y_val, seed):
    """The loss curves and prior samples, plus the latent scatter and manifold when latent_dim = 2."""
    history = checkpoints.history_dict(checkpoints.read_history(out / checkpoints.HISTORY_NAME))
    written = [_save(plots.plot_history(history), out / PLOTS["history"])]
    fig = plots.plot_images(_prior_samples(vae, 64, seed), n_cols=8)
    fig.suptitle("Decoder means for 64 draws z ~ N(0, I)")
    written.append(_save(fig, out / PLOTS["samples"]))
    if vae.latent_dim == 2:
        with torch.no_grad():
            z_mean = keras.ops.convert_to_numpy(vae.encode(x_val)[0])
        written.append(_save(plots.plot_latent(z_mean, y_val), out / PLOTS["latent"]))
        written.append(_save(plots.plot_manifold(vae, n=20), out / PLOTS["manifold"]))
    return written


# ------------------------------------------------------------------------ sample
def sample(args: argparse.Namespace) -> int:
    out = Path(args.out)
    if out.suffix.lower() != ".png":
        raise DataError(
            f"--out {out}: expected a .png file name. Fix: e.g. --out {out.with_suffix('.png')}."
        )
    vae = checkpoints.load_vae(args.model, compile=False)
    images = _prior_samples(vae, args.n, args.seed)
    fig = plots.plot_images(images, n_cols=args.n_cols or math.ceil(math.sqrt(args.n)))
    fig.suptitle(f"Decoder means for {args.n} draws z ~ N(0, I)")
    _save(fig, out)
    print(f"wrote {args.n} samples from the prior of {args.model} to {out}")
    return 0


# ---------------------------------------------------------------------- evaluate
def evaluate(args: argparse.Namespace) -> int:
    vae = checkpoints.load_vae(args.model, compile=False)
    _, (x_test, _) = _mnist(args.data_dir)
    x = _prepare(x_test[: args.limit], vae.likelihood, args.seed + 1)
    if tuple(x.shape[1:]) != tuple(vae.image_shape):
        raise DataError(
            f"--model {args.model}: the model takes images of shape {tuple(vae.image_shape)}, but MNIST "
            f"images are {tuple(x.shape[1:])}. Fix: pass a model trained on MNIST, e.g. by "
            "`python -m vae_course train --out DIR`."
        )
    print(
        f"{args.model}: {vae.likelihood} likelihood, latent_dim {vae.latent_dim}; {len(x)} test images",
        flush=True,
    )
    nelbo = negative_elbo(vae, x, seed=args.seed)
    bounds, start, chunk = [], time.perf_counter(), 1000
    for i in range(0, len(x), chunk):
        bounds.append(iwae_bound(vae, x[i : i + chunk], args.k, seed=args.seed + i // chunk))
        if len(x) > chunk:
            done = min(i + chunk, len(x))
            elapsed = time.perf_counter() - start
            print(
                f"  IWAE k={args.k}: {done}/{len(x)} images, {elapsed:.0f} s",
                file=sys.stderr,
                flush=True,
            )
    bound = np.concatenate(bounds)
    rows = [("test -ELBO (one z per image)", nelbo), (f"IWAE bound L_{args.k} <= log p(x)", bound)]
    width = max(len(label) for label, _ in rows)
    for label, values in rows:
        print(
            f"{label:<{width}}  {values.mean():11.4f} nats per image  (std. error {_stderr(values):.4f})"
        )
    print(
        f"so -log p(x) <= {-bound.mean():.4f} nats, {nelbo.mean() + bound.mean():.4f} nats below the -ELBO"
    )
    return 0


# ----------------------------------------------------------------------- helpers
def _mnist(data_dir):
    return load_mnist(data_dir)


def _prepare(x_uint8, likelihood, seed, binarized=True):
    """uint8 MNIST -> float32 in [0, 1]; binarized once (each pixel ~ Bernoulli) for the Bernoulli
    likelihood, unless ``binarized`` is False (training images, binarized afresh every epoch)."""
    x = scale_images(x_uint8)
    return binarize(x, seed) if likelihood == "bernoulli" and binarized else x


def _prior_samples(vae: VAE, n, seed):
    z = torch.randn((n, vae.latent_dim), generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        return keras.ops.convert_to_numpy(vae.decode(z))


def _save(fig, path):
    try:
        return atomic.save_figure(fig, path)
    finally:
        plt.close(fig)


def _stderr(values):
    return mean_and_se(values)[1] if len(values) > 1 else float("nan")


__all__ = ["fetch_data", "train_command", "sample", "evaluate", "PLOTS", "SETTINGS"]
