"""Reading the book's configuration, shared by the book tests."""

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def load_config():
    """_config.yml as a dict."""
    return yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))


def toc_files(entries=None):
    """Every ``file:`` of _toc.yml (the root first), as written there (no suffix)."""
    if entries is None:
        toc = yaml.safe_load((ROOT / "_toc.yml").read_text(encoding="utf-8"))
        return [toc["root"]] + toc_files(toc.get("parts", []) + toc.get("chapters", []))
    files = []
    for entry in entries:
        if "file" in entry:
            files.append(entry["file"])
        for key in ("parts", "chapters", "sections"):
            files += toc_files(entry.get(key, []))
    return files
