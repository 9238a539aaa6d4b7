"""The committed measurements (``measurements/`` in the repository), read by the chapters.

:func:`load_measurement` reads one JSON file of ``measurements/``: from the
repository checkout the package sits in when there is one, otherwise (the
package installed by pip, as on Colab) from the repository's ``main`` branch
on GitHub, so a chapter prints the same numbers wherever it runs. The GitHub
copy is ``main``'s, not pinned to the installed package's commit: an older
install reads the newest committed measurements.
"""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

from ..errors import DataError

# = repository.url in _config.yml (scripts/set_repo_url.py sets both; tests/test_book_config.py)
REPO_URL = "https://github.com/vae-course/vae-course"
RAW_URL = REPO_URL.replace("https://github.com/", "https://raw.githubusercontent.com/") + "/main"
MEASUREMENTS = Path(__file__).resolve().parents[2] / "measurements"


def load_measurement(relative: str, folder: str | Path | None = None):
    """The parsed JSON of ``measurements/<relative>``, e.g. ``"spread/ch6_seed0.json"``.

    ``folder`` defaults to the checkout's ``measurements/``; when that folder
    does not exist the file is fetched from the repository on GitHub.
    """
    if (
        not isinstance(relative, str)
        or not relative.endswith(".json")
        or ".." in relative
        or Path(relative).is_absolute()
    ):
        raise DataError(
            f"relative must be a path inside measurements/ ending in .json, got {relative!r}; "
            'pass e.g. "spread/ch6_seed0.json".'
        )
    root = Path(folder) if folder is not None else MEASUREMENTS
    if root.is_dir():
        path = root / relative
        if not path.is_file():
            raise DataError(
                f"measurement {relative!r} not found in {root}; the files there are made by "
                "scripts/measure_*.py (see measurements/README.md)."
            )
        return json.loads(path.read_text(encoding="utf-8"))
    url = f"{RAW_URL}/measurements/{relative}"
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return json.loads(response.read().decode("utf-8"))
    except OSError as err:
        raise DataError(
            f"measurement {relative!r}: no measurements/ folder next to the package and "
            f"fetching {url} failed ({err}); run the chapter from a clone of {REPO_URL}."
        ) from err
