"""The book's configuration agrees with its chapters (no build needed: fast).

* every file in _toc.yml exists, and every notebook in book/ is in _toc.yml
  (with ``only_build_toc_files`` a chapter left out of the toc is silently left out of the book);
* every notebook opens with its title (a ``# `` markdown cell), then CONTRIBUTING.md's
  set-up cell, tagged ``remove-input`` (hidden in the HTML), its REPO_URL equal to
  _config.yml's ``repository.url``;
* _config.yml never executes notebooks and builds Colab links from that URL on branch main;
* scripts/set_repo_url.py changes the URL in both places and nothing else.
"""

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from booktools import load_config, toc_files

ROOT = Path(__file__).resolve().parent.parent
BOOK = ROOT / "book"


def source_of(docname):
    """The one source file of a toc entry, or None."""
    found = [p for p in (ROOT / f"{docname}.ipynb", ROOT / f"{docname}.md") if p.is_file()]
    return found[0] if len(found) == 1 else None


def setup_cell_template():
    """The set-up cell, exactly as CONTRIBUTING.md gives it (the python block after 'Cell 1')."""
    text = (ROOT / "CONTRIBUTING.md").read_text(encoding="utf-8")
    m = re.search(r"\*\*Cell 1, the set-up cell\*\*.*?```python\n(.*?)\n\s*```", text, re.S)
    assert m, "CONTRIBUTING.md no longer shows the set-up cell after '**Cell 1, the set-up cell**'"
    lines = m.group(1).splitlines()
    indent = min(len(line) - len(line.lstrip()) for line in lines if line.strip())
    return "\n".join(line[indent:] for line in lines)


def with_repo_url(source, url):
    return re.sub(r'(?m)^REPO_URL = "[^"]*"', f'REPO_URL = "{url}"', source)


NOTEBOOKS = sorted(BOOK.glob("*.ipynb"))


def test_toc_files_exist():
    files = toc_files()
    missing = [f for f in files if source_of(f) is None]
    assert not missing, (
        f"_toc.yml lists files that do not exist (or exist twice, as .md and .ipynb): {missing}"
    )
    assert len(set(files)) == len(files), "_toc.yml lists a file twice"


def test_every_notebook_is_in_the_toc():
    listed = {str(source_of(f).relative_to(ROOT)) for f in toc_files() if source_of(f)}
    left_out = [
        str(nb.relative_to(ROOT)) for nb in NOTEBOOKS if str(nb.relative_to(ROOT)) not in listed
    ]
    assert not left_out, (
        f"notebooks missing from _toc.yml (only_build_toc_files leaves them out of the book): {left_out}"
    )


def test_chapters_are_numbered_and_toc_root_is_the_landing_page():
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text(encoding="utf-8"))
    assert toc["format"] == "jb-book"
    assert toc["root"] == "book/intro"
    for part in toc["parts"]:
        chapters = [c["file"] for c in part["chapters"]]
        if any(source_of(c) and source_of(c).suffix == ".ipynb" for c in chapters):
            assert part.get("numbered") is True, (
                f"part {part['caption']!r} holds chapters but is not numbered"
            )


def test_config_essentials():
    config = load_config()
    assert config["execute"]["execute_notebooks"] == "off", (
        "the book must show the stored, nbval-checked outputs"
    )
    assert config["only_build_toc_files"] is True
    repo = config["repository"]
    assert re.fullmatch(r"https://github\.com/[\w.-]+/[\w.-]+", repo["url"]), repo["url"]
    assert repo["branch"] == "main"
    assert repo.get("path_to_book") == "colab", (
        "the Colab link must open the Colab edition, colab/book/NN_name.ipynb"
    )
    assert config["launch_buttons"]["colab_url"] == "https://colab.research.google.com"
    assert {"dollarmath", "amsmath"} <= set(config["parse"]["myst_enable_extensions"])
    sphinx = config["sphinx"]["config"]
    assert sphinx["math_numfig"] is True and sphinx["numfig"] is True
    assert (ROOT / config["bibtex_bibfiles"][0]).is_file()
    # A pip-installed package (Colab) fetches measurements/ from the same repository.
    from vae_course.tools import measurements

    assert repo["url"] == measurements.REPO_URL, "run scripts/set_repo_url.py to make them agree"
    assert measurements.RAW_URL.endswith(repo["url"].split("github.com/")[1] + "/main")
    # MathJax comes with the site, not from a CDN.
    assert "://" not in sphinx["mathjax_path"]
    assert any((ROOT / d / sphinx["mathjax_path"]).is_file() for d in sphinx["html_static_path"])


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_opens_with_title_then_setup_cell(path):
    nb = json.loads(path.read_text(encoding="utf-8"))
    title = "".join(nb["cells"][0]["source"])
    assert nb["cells"][0]["cell_type"] == "markdown" and title.startswith("# "), (
        f"{path.name}: cell 0 must be the chapter's title, a markdown cell starting '# ' (CONTRIBUTING.md)"
    )
    cell = nb["cells"][1]
    source = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
    url = load_config()["repository"]["url"]
    assert cell["cell_type"] == "code", (
        f"{path.name}: cell 1 must be the set-up code cell (CONTRIBUTING.md)"
    )
    assert "remove-input" in cell.get("metadata", {}).get("tags", []), (
        f"{path.name}: the set-up cell must carry the tag remove-input (hidden in the HTML, run on Colab)"
    )
    m = re.search(r'(?m)^REPO_URL = "([^"]*)"', source)
    assert m, f"{path.name}: the set-up cell has no REPO_URL line"
    assert m.group(1) == url, (
        f"{path.name}: REPO_URL is {m.group(1)!r} but _config.yml's repository.url is {url!r}; "
        "run `python scripts/set_repo_url.py URL` to set both"
    )
    assert source.strip() == with_repo_url(setup_cell_template(), url).strip(), (
        f"{path.name}: the set-up cell differs from the one in CONTRIBUTING.md"
    )


def test_set_repo_url_changes_only_the_url(tmp_path):
    (tmp_path / "book").mkdir()
    (tmp_path / "vae_course" / "tools").mkdir(parents=True)
    module = Path("vae_course") / "tools" / "measurements.py"
    shutil.copy(ROOT / module, tmp_path / module)
    shutil.copy(ROOT / "_config.yml", tmp_path / "_config.yml")
    for nb in NOTEBOOKS:
        shutil.copy(nb, tmp_path / "book" / nb.name)
    before = {
        p: p.read_bytes()
        for p in [
            tmp_path / "_config.yml",
            tmp_path / module,
            *sorted((tmp_path / "book").iterdir()),
        ]
    }
    old_url = load_config()["repository"]["url"]
    script = [sys.executable, str(ROOT / "scripts" / "set_repo_url.py"), "--root", str(tmp_path)]

    subprocess.run(
        script + ["https://github.com/someone/their-fork.git"], check=True, capture_output=True
    )
    config = yaml.safe_load((tmp_path / "_config.yml").read_text(encoding="utf-8"))
    assert config["repository"]["url"] == "https://github.com/someone/their-fork"
    assert config == {
        **load_config(),
        "repository": {**load_config()["repository"], "url": config["repository"]["url"]},
    }
    for nb_path in sorted((tmp_path / "book").iterdir()):
        old = json.loads(before[nb_path])
        new = json.loads(nb_path.read_bytes())
        old["cells"][1]["source"] = with_repo_url(
            "".join(old["cells"][1]["source"]), "https://github.com/someone/their-fork"
        )
        new["cells"][1]["source"] = "".join(new["cells"][1]["source"])
        assert new == old, f"{nb_path.name}: set_repo_url.py changed more than REPO_URL"

    changed = (tmp_path / module).read_text(encoding="utf-8")
    assert 'REPO_URL = "https://github.com/someone/their-fork"' in changed
    assert changed.replace("someone/their-fork", old_url.split("github.com/")[1]) == (
        before[tmp_path / module].decode("utf-8")
    )

    # Back again: every file byte for byte as before.
    subprocess.run(script + [old_url], check=True, capture_output=True)
    for p, data in before.items():
        assert p.read_bytes() == data, f"{p.name} is not restored byte for byte"

    bad = subprocess.run(script + ["https://gitlab.com/a/b"], capture_output=True, text=True)
    assert bad.returncode != 0 and "not a GitHub repository URL" in bad.stderr
