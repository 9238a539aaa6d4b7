#!/usr/bin/env bash
# Run the package tests against the lowest versions of keras, numpy and matplotlib that
# pyproject.toml allows, in a second, throw-away virtual environment.
#
#     scripts/test_lowest_versions.sh [extra pytest arguments]
#
# Why: on Colab the set-up cell installs only vae_course, so the chapters run on whatever
# torch, keras, numpy and matplotlib Colab has; pyproject.toml's lower bounds must be versions
# the package has been tested with. This script installs exactly those bounds from PyPI.
#
# torch stays at 2.13.0, the CPU build that requirements.txt pins: any other torch from PyPI
# is a multi-GB CUDA build. torch's own lower bound is checked on a GPU machine instead
# (see README.md, "Package versions").
#
# Needs: python3 (3.10 or newer), pip access to PyPI, MNIST where the tests find it
# (VAE_COURSE_DATA or the course cache). LOWEST_VENV=DIR keeps the environment in DIR.
set -euo pipefail
cd "$(dirname "$0")/.."

venv="${LOWEST_VENV:-$(mktemp -d)/venv}"
python3 -m venv "$venv"
. "$venv/bin/activate"

# "keras>=3.5" in pyproject.toml's dependencies -> "keras==3.5"; torch keeps the tested pin.
pins=$(python - <<'PY'
import re
text = open("pyproject.toml", encoding="utf-8").read()
deps = re.search(r"^dependencies = \[(.*?)^\]", text, re.S | re.M).group(1)
for name, low in re.findall(r'"([A-Za-z0-9_.-]+)>=([^",]+)"', deps):
    print("torch==2.13.0" if name == "torch" else f"{name}=={low}")
PY
)
pytest_pin=$(grep -E '^pytest==' requirements.txt)
echo "lowest allowed versions: $(echo $pins)"
python -m pip install -q --disable-pip-version-check $pins "$pytest_pin"
python -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
python - <<'PY'
import importlib.metadata as md
print("installed:", ", ".join(f"{p} {md.version(p)}" for p in ("torch", "keras", "numpy", "matplotlib")))
PY

export KERAS_BACKEND=torch
# The package tests; the book's tests need Jupyter Book and Chromium, which are not the package's.
python -m pytest -q tests --ignore=tests/test_book_html.py --ignore=tests/test_book_config.py "$@"
