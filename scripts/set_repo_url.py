"""Point the course at another GitHub repository, in the three places that name it.

    python scripts/set_repo_url.py https://github.com/OWNER/REPO

1. ``repository.url`` in ``_config.yml``: the book's repository button and every
   chapter's "Open in Colab" link
   (https://colab.research.google.com/github/OWNER/REPO/blob/main/book/NN_name.ipynb).
2. ``REPO_URL`` in the set-up cell (the first code cell) of every notebook in ``book/``: what a
   chapter ``pip install``s from on Colab.
3. ``REPO_URL`` in ``vae_course/tools/measurements.py``: where a pip-installed package
   (Colab) fetches the committed ``measurements/`` files that chapters read.

Only those strings change: each file is edited as text, so the rest of
``_config.yml`` (comments included) and of every notebook (outputs, metadata,
formatting) stays byte for byte as it was. Nothing is written unless every file
can be changed. ``tests/test_book_config.py`` checks that they agree.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

URL_RE = re.compile(r"^https://github\.com/[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")
# `  url: https://...` inside the top-level `repository:` block of _config.yml.
CONFIG_URL_RE = re.compile(
    r"(?m)^(repository:[ \t]*\n(?:[ \t]+.*\n|[ \t]*\n)*?[ \t]+url:[ \t]*)(\S+)"
)
# The REPO_URL line of the set-up cell, as CONTRIBUTING.md gives it.
CELL_URL_RE = re.compile(r'^REPO_URL = "([^"]*)"(.*)$')
# The REPO_URL line of vae_course/tools/measurements.py.
MODULE_URL_RE = re.compile(r'(?m)^(REPO_URL = ")([^"]*)(")')
MODULE = Path("vae_course") / "tools" / "measurements.py"


def normalize(url: str) -> str:
    url = url.strip().rstrip("/")
    if url.endswith(".git"):
        url = url[: -len(".git")]
    if not URL_RE.match(url):
        raise SystemExit(
            f"error: {url!r} is not a GitHub repository URL (https://github.com/OWNER/REPO); "
            "Colab opens notebooks from GitHub only."
        )
    return url


def read(path: Path) -> str:
    return path.read_bytes().decode("utf-8")  # bytes: keep line endings exactly


def new_config_text(path: Path, url: str) -> str:
    text = read(path)
    new, n = CONFIG_URL_RE.subn(lambda m: m.group(1) + url, text, count=1)
    if n != 1:
        raise SystemExit(f"error: no `url:` under `repository:` in {path}")
    return new


def new_module_text(path: Path, url: str) -> str:
    text = read(path)
    new, n = MODULE_URL_RE.subn(lambda m: m.group(1) + url + m.group(3), text, count=1)
    if n != 1:
        raise SystemExit(f'error: no `REPO_URL = "..."` line in {path}')
    return new


def new_notebook_text(path: Path, url: str) -> str:
    """The notebook's text with REPO_URL in the set-up cell set to ``url``; nothing else changes.

    The set-up cell is the notebook's first code cell (it follows the title; see CONTRIBUTING.md).
    """
    text = read(path)
    nb = json.loads(text)
    cells = nb.get("cells") or []
    idx = next((i for i, c in enumerate(cells) if c.get("cell_type") == "code"), None)
    if idx is None:
        raise SystemExit(f"error: {path}: no code cell, so no set-up cell (see CONTRIBUTING.md)")
    source = cells[idx]["source"]
    lines = source if isinstance(source, list) else source.splitlines(keepends=True)
    for i, line in enumerate(lines):  # noqa: B007 (i is used after the loop)
        m = CELL_URL_RE.match(line.rstrip("\r\n"))
        if m:
            break
    else:
        raise SystemExit(f'error: {path}: the set-up cell has no `REPO_URL = "..."` line')
    # Only the quoted URL changes: the comment after it and the line ending stay.
    new_line = line[: m.start(1)] + url + line[m.end(1) :]
    if new_line == line:
        return text
    if isinstance(source, list):
        # Each source line is its own JSON string: replace the first (the set-up cell is the first code cell).
        old_json, new_json = (
            json.dumps(line, ensure_ascii=False),
            json.dumps(new_line, ensure_ascii=False),
        )
        if old_json not in text:
            raise SystemExit(f"error: {path}: cannot find the REPO_URL line in the file's text")
        new_text = text.replace(old_json, new_json, 1)
        new_lines = lines[:i] + [new_line] + lines[i + 1 :]
        expected_source = new_lines
    else:
        old_json, new_json = json.dumps(source, ensure_ascii=False), None
        expected_source = "".join(lines[:i] + [new_line] + lines[i + 1 :])
        new_json = json.dumps(expected_source, ensure_ascii=False)
        if old_json not in text:
            raise SystemExit(
                f"error: {path}: cannot find the set-up cell's source in the file's text"
            )
        new_text = text.replace(old_json, new_json, 1)
    # The edit must have changed the set-up cell's source and nothing else.
    expected = json.loads(text)
    expected["cells"][idx]["source"] = expected_source
    if json.loads(new_text) != expected:
        raise SystemExit(
            f"error: {path}: editing REPO_URL as text would change more than the set-up cell"
        )
    return new_text


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url", help="the repository, https://github.com/OWNER/REPO")
    parser.add_argument("--root", type=Path, default=ROOT, help=argparse.SUPPRESS)  # for the tests
    args = parser.parse_args(argv)
    url, root = normalize(args.url), args.root

    config = root / "_config.yml"
    changes = {config: new_config_text(config, url)}
    for nb in sorted((root / "book").glob("*.ipynb")):
        changes[nb] = new_notebook_text(nb, url)
    if (root / MODULE).is_file():
        changes[root / MODULE] = new_module_text(root / MODULE, url)
    for path, text in changes.items():  # every file was checked before any is written
        if read(path) != text:
            path.write_bytes(text.encode("utf-8"))
            print(f"updated {path.relative_to(root)}")
        else:
            print(f"unchanged {path.relative_to(root)}")
    print(f"repository URL: {url}")
    if (
        root / "colab"
    ).is_dir():  # the Colab edition repeats the set-up cell and names the repository
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        import make_colab

        return make_colab.main(["--root", str(root)])
    return 0


if __name__ == "__main__":
    sys.exit(main())
