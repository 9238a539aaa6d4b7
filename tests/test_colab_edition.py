"""The Colab edition (colab/book/*.ipynb) shows what the book shows, in markdown Jupyter can render.

Colab, Jupyter and VS Code render CommonMark plus $...$ math and none of Jupyter Book's MyST.
``scripts/make_colab.py`` writes the edition from the chapters; here each chapter of the edition is
rendered the way Jupyter renders it (nbconvert's markdown exporter, no Sphinx) and checked:

* it is exactly what the script writes from the current chapters (nobody edited it by hand, and
  nobody forgot to regenerate it);
* no MyST role, directive, directive option or equation label is left in the text;
* every code block the book shows is there: each code cell, and the source of each package object
  a ``{literalinclude}`` shows, read independently with ``inspect.getsource``;
* every citation is there as author and year, every equation reference as a number.
"""

import importlib
import inspect
import json
import re
import shutil
import subprocess
import sys
import textwrap

import pytest
from booktools import ROOT, toc_files

sys.path.insert(0, str(ROOT / "scripts"))
import make_colab

CHAPTERS = [f for f in toc_files() if (ROOT / f"{f}.ipynb").is_file()]

MYST_LEFTOVERS = {
    "a role": re.compile(r"\{[\w:-]+\}`"),
    "a directive fence": re.compile(r"(?m)^\s*(`{3,}|:{3,})\{[\w:-]+\}"),
    "a directive option": re.compile(r"(?m)^:(label|class|pyobject|filter|lines|language|name):"),
    "an equation label": re.compile(r"\$\$\s*\([\w:.-]+\)"),
    "a MyST target": re.compile(r"(?m)^\([\w:.-]+\)=\s*$"),
    "an internal marker": re.compile("\x00"),
}


def cells(path):
    return json.loads(path.read_text(encoding="utf-8"))["cells"]


@pytest.fixture(scope="module")
def rendered():
    """{docname: the Colab edition as Jupyter's markdown}, rendered by nbconvert."""
    from nbconvert import MarkdownExporter

    exporter = MarkdownExporter()
    return {d: exporter.from_filename(str(ROOT / "colab" / f"{d}.ipynb"))[0] for d in CHAPTERS}


def test_every_chapter_has_an_up_to_date_colab_edition():
    run = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "make_colab.py"), "--check"],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, (
        run.stderr + "\n(run `python scripts/make_colab.py` and commit colab/)"
    )
    assert sorted(
        p.relative_to(ROOT / "colab").as_posix() for p in (ROOT / "colab").rglob("*.ipynb")
    ) == sorted(f"{d}.ipynb" for d in CHAPTERS if d in make_colab.numbered_chapters())


@pytest.mark.parametrize("docname", CHAPTERS)
def test_no_myst_is_left(docname, rendered):
    text = rendered[docname]
    found = {what: rx.findall(text)[:3] for what, rx in MYST_LEFTOVERS.items() if rx.search(text)}
    assert not found, f"{docname}: MyST left in the Colab edition: {found}"
    assert text.lstrip().startswith("# "), (
        f"{docname}: the Colab edition must open with the chapter's title"
    )


@pytest.mark.parametrize("docname", CHAPTERS)
def test_every_code_block_of_the_book_is_shown(docname, rendered):
    text = rendered[docname]
    book = cells(ROOT / f"{docname}.ipynb")
    for cell in book:
        source = "".join(cell["source"])
        if cell["cell_type"] == "code":
            assert source in text, f"{docname}: a code cell of the book is missing: {source[:80]!r}"
            continue
        for path, name in re.findall(
            r"```\{literalinclude\}\s*\.\./vae_course/([\w/]+)\.py\s*\n:pyobject:\s*(\S+)", source
        ):
            path = path.replace("/", ".")
            obj = importlib.import_module(f"vae_course.{path}")
            for part in name.split("."):
                obj = getattr(obj, part)
            code = textwrap.dedent(inspect.getsource(obj)).rstrip("\n")
            assert f"```python\n{code}\n```" in text, (
                f"{docname}: the source of vae_course.{path}.{name} is missing"
            )


@pytest.mark.parametrize("docname", CHAPTERS)
def test_citations_and_equation_references_are_readable(docname, rendered):
    text = rendered[docname]
    book = "\n".join(
        "".join(c["source"])
        for c in cells(ROOT / f"{docname}.ipynb")
        if c["cell_type"] == "markdown"
    )
    bib = make_colab.Bibliography(ROOT / "book" / "references.bib")
    for keys in re.findall(r"\{cite:[pt]\}`([^`]*)`", book):
        for key in keys.split(","):
            key = key.strip()
            assert (
                f"{bib.names(key)}, {bib.year(key)}" in text
                or f"{bib.names(key)} ({bib.year(key)})" in text
            ), f"{docname}: citation {key} is not shown as author and year"
    n_refs = len(re.findall(r"\{eq\}`", book))
    chapter = (
        make_colab.numbered_chapters().index(docname) + 1
        if docname in make_colab.numbered_chapters()
        else None
    )
    if n_refs:
        numbers = re.findall(r"\((\d+)\.\d+\)", text)
        assert len(numbers) >= n_refs, (
            f"{docname}: {n_refs} equation references but {len(numbers)} numbers shown"
        )
    n_eqs = len(make_colab.LABELLED_MATH_RE.findall(book))
    tags = re.findall(r"\\tag\{(\d+)\.(\d+)\}", text)
    assert [int(b) for _, b in tags] == list(range(1, n_eqs + 1)), (
        f"{docname}: equations not numbered 1..{n_eqs}"
    )
    assert all(int(a) == chapter for a, _ in tags), (
        f"{docname}: equation numbers must start with {chapter}."
    )


def test_unknown_myst_stops_the_script(tmp_path):
    """A construct the script cannot convert is an error that names the chapter, not raw text for readers."""
    pages = [
        p.relative_to(ROOT).as_posix() for p in (ROOT / "book").glob("*.md")
    ]  # {doc} links reach them
    for f in ["_config.yml", "_toc.yml", "book/references.bib", *pages]:
        (tmp_path / f).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / f).write_text((ROOT / f).read_text(encoding="utf-8"), encoding="utf-8")
    shutil.copytree(ROOT / "vae_course", tmp_path / "vae_course")
    nb = json.loads((ROOT / f"{CHAPTERS[1]}.ipynb").read_text(encoding="utf-8"))
    nb["cells"].append(
        {"cell_type": "markdown", "metadata": {}, "source": ["See {ref}`somewhere`."]}
    )
    (tmp_path / f"{CHAPTERS[1]}.ipynb").write_text(json.dumps(nb), encoding="utf-8")
    run = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "make_colab.py"), "--root", str(tmp_path)],
        capture_output=True,
        text=True,
    )
    assert (
        run.returncode == 2 and "{ref}" in run.stderr and CHAPTERS[1].split("/")[-1] in run.stderr
    ), run.stderr
    assert not (tmp_path / "colab").exists(), (
        "nothing may be written when a chapter cannot be converted"
    )
