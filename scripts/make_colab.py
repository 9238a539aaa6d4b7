"""Write the Colab edition of the book: colab/book/NN_name.ipynb from book/NN_name.ipynb.

    python scripts/make_colab.py            # (re)write colab/book/*.ipynb
    python scripts/make_colab.py --check    # exit 1 if a committed file is missing or out of date

The chapters are written once, in MyST (Jupyter Book's markdown). Colab, Jupyter and VS Code
render plain CommonMark plus $...$ math, so this script rewrites every markdown cell:

* ``{literalinclude} ../vae_course/M.py`` with ``:pyobject: NAME`` -> a ```python block holding
  that function's or class's source, read from the file;
* ``{cite:p}`key``` -> "(Kingma and Welling, 2013)", ``{cite:t}`` -> "Kingma and Welling (2013)",
  each a link to the work; ``{bibliography}`` -> the list of works this chapter cites;
* ``$$ ... $$ (label)`` -> ``$$ ... \\tag{4.2} $$`` and ``{eq}`label``` -> "(4.2)", numbered as the
  book numbers them (chapter.equation);
* ``{exercise}`` -> "#### Exercise 4.1: title", ``{numref}`` -> "Exercise 4.1"; a solution's markdown
  is folded in ``<details>`` and its code cells are folded by Colab (``cellView: form``);
* ``{admonition}``, ``{note}``, ``{warning}`` -> a quoted block with a bold title; ``{doc}`` -> a link
  to that chapter's Colab edition.

Code cells and their stored outputs are copied unchanged (so the edition shows what nbval checked),
except that a solution's code cells get a Colab form title. A MyST construct this script does not
know stops it with an error naming the chapter and the construct, so nothing raw reaches a reader.
Never edit colab/ by hand: tests/test_colab_edition.py checks that it is what this script writes.
"""

from __future__ import annotations

import argparse
import copy
import json
import re
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
OUT_DIR = ROOT / "colab"

FENCE_RE = re.compile(r"^(?P<fence>`{3,}|:{3,})\{(?P<name>[\w:-]+)\}[ \t]*(?P<arg>.*)$")
ROLE_RE = re.compile(r"\{(?P<role>[\w:-]+)\}`(?P<text>[^`]*)`")
LABELLED_MATH_RE = re.compile(r"\$\$(?P<body>.+?)\$\$[ \t]*\((?P<label>[\w:.-]+)\)", re.S)
TARGET_RE = re.compile(r"(?m)^\((?P<label>[\w:.-]+)\)=[ \t]*$")
COMMENT_RE = re.compile(r"(?m)^%.*\n?")
SOL_START, SOL_END = "\x00solution-start\x00", "\x00solution-end\x00"
EXERCISE_RE = re.compile(
    r"(?ms)^(?P<fence>`{3,}|:{3,})\{exercise\}[^\n]*\n(?P<body>.*?)^(?P=fence)[ \t]*$"
)


class ConversionError(ValueError):
    """A MyST construct the Colab edition cannot show."""


# --------------------------------------------------------------------------- the book's facts
def load_yaml(path: Path) -> dict:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def numbered_chapters(root: Path = ROOT) -> list[str]:
    """The toc's numbered chapters in order (numbers run across parts: use_multitoc_numbering)."""
    toc = load_yaml(root / "_toc.yml")
    out = []
    for part in toc.get("parts", []):
        if part.get("numbered"):
            out += [c["file"] for c in part["chapters"]]
    return out


def colab_link(root: Path, docname: str) -> str:
    """Colab's URL of a chapter's Colab edition (repository.url, branch and path_to_book of _config.yml)."""
    repo = load_yaml(root / "_config.yml")["repository"]
    owner_repo = repo["url"].removeprefix("https://github.com/").strip("/")
    prefix = repo.get("path_to_book", "").strip("/")
    path = f"{prefix}/{docname}.ipynb" if prefix else f"{docname}.ipynb"
    return f"https://colab.research.google.com/github/{owner_repo}/blob/{repo['branch']}/{path}"


def markdown_link(root: Path, docname: str) -> str:
    """GitHub's URL of a Markdown page of the book (repository.url and branch of _config.yml)."""
    repo = load_yaml(root / "_config.yml")["repository"]
    return f"{repo['url'].rstrip('/')}/blob/{repo['branch']}/{docname}.md"


class Bibliography:
    """Author-year labels and reference-list entries from book/references.bib.

    pybtex parses the file and formats each entry of a reference list with its ``unsrt`` style, the
    style the book's own list (sphinxcontrib-bibtex) derives from; the author-year label of a
    citation is made here, as ``bibtex_reference_style: author_year`` shows it in the book.
    """

    def __init__(self, path: Path):
        from pybtex.backends.plaintext import Backend
        from pybtex.database import parse_file
        from pybtex.style.formatting.unsrt import Style

        self.entries = parse_file(str(path)).entries
        self._style, self._backend = Style(), Backend()

    @staticmethod
    def _plain(text: str) -> str:
        return re.sub(r"[{}]", "", text).replace("--", "–")

    def _last_names(self, key: str) -> list[str]:
        return [
            self._plain(" ".join(p.prelast_names + p.last_names))
            for p in self.entries[key].persons["author"]
        ]

    def names(self, key: str) -> str:
        last = self._last_names(key)
        if len(last) == 1:
            return last[0]
        if len(last) == 2:
            return f"{last[0]} and {last[1]}"
        return f"{last[0]} et al."

    def year(self, key: str) -> str:
        return self.entries[key].fields["year"]

    def url(self, key: str) -> str | None:
        f = self.entries[key].fields
        if "url" in f:
            return f["url"]
        if "doi" in f:
            return f"https://doi.org/{f['doi']}"
        m = re.search(r"arXiv:(\d{4}\.\d{4,5})", " ".join(f.values()))
        if m:
            return f"https://arxiv.org/abs/{m.group(1)}"
        return None

    def check(self, key: str, where: str) -> None:
        if key not in self.entries:
            raise ConversionError(f"{where}: citation key {key!r} is not in book/references.bib")

    def link(self, key: str, text: str) -> str:
        url = self.url(key)
        return f"[{text}]({url})" if url else text

    def entry(self, key: str) -> str:
        """The reference-list entry of ``key``, as pybtex's unsrt style writes it, then its link."""
        formatted = self._style.format_entry(key, self.entries[key])
        text = " ".join(formatted.text.render(self._backend).split())
        url = self.url(key)
        return f"{text} <{url}>" if url else text


# --------------------------------------------------------------------------- source of a package object
class _IncludeConfig:
    source_encoding = "utf-8"  # the one setting of Sphinx's config that LiteralIncludeReader reads


def pyobject_source(path: Path, name: str) -> str:
    """The source of ``name`` (``func`` or ``Class.method``) in the file, dedented.

    Read by Sphinx's own ``LiteralIncludeReader``, the code behind ``literalinclude``'s
    ``:pyobject:``, so the edition shows exactly the lines the book shows.
    """
    from sphinx.directives.code import LiteralIncludeReader

    reader = LiteralIncludeReader(str(path), {"pyobject": name, "dedent": None}, _IncludeConfig())
    try:
        text, _ = reader.read()
    except ValueError as exc:  # Sphinx: 'Object named ... not found in include file ...'
        raise ConversionError(
            f"{path.name} has no {name!r} (the :pyobject: of a literalinclude)"
        ) from exc
    return text.rstrip("\n")


# --------------------------------------------------------------------------- one chapter
class Chapter:
    def __init__(
        self, root: Path, docname: str, number: int, bib: Bibliography, titles: dict[str, str]
    ):
        self.root, self.docname, self.number, self.bib, self.titles = (
            root,
            docname,
            number,
            bib,
            titles,
        )
        self.name = f"{docname}.ipynb"
        self.equations: dict[
            str, str
        ] = {}  # label -> "4.2"; after the book's first pass, every chapter's
        self.exercises: dict[str, str] = {}
        self.cited: list[str] = []
        self.in_solution: str | None = None

    # -- numbering: one pass over every markdown cell, in order, as Sphinx numbers them
    def number_things(self, cells: list[dict]) -> None:
        eq = ex = 0
        for cell in cells:
            if cell["cell_type"] != "markdown":
                continue
            text = "".join(cell["source"])
            for m in LABELLED_MATH_RE.finditer(text):
                eq += 1
                self.equations[m.group("label")] = f"{self.number}.{eq}"
            for m in EXERCISE_RE.finditer(text):
                ex += 1
                label = re.search(r"(?m)^:label:[ \t]*(\S+)", m.group("body"))
                if label is None:
                    raise ConversionError(f"{self.name}: an exercise without :label:")
                self.exercises[label.group(1)] = f"{self.number}.{ex}"

    # -- roles
    def roles(self, text: str) -> str:
        def role(m: re.Match) -> str:
            kind, body = m.group("role"), m.group("text")
            if kind in ("cite:p", "cite:t", "cite"):
                keys = [k.strip() for k in body.split(",")]
                for k in keys:
                    self.bib.check(k, self.name)
                    if k not in self.cited:
                        self.cited.append(k)
                if kind == "cite:t":
                    return ", ".join(
                        self.bib.link(k, f"{self.bib.names(k)} ({self.bib.year(k)})") for k in keys
                    )
                return (
                    "("
                    + "; ".join(
                        self.bib.link(k, f"{self.bib.names(k)}, {self.bib.year(k)}") for k in keys
                    )
                    + ")"
                )
            if kind == "eq":
                if body not in self.equations:
                    raise ConversionError(
                        f"{self.name}: {{eq}}`{body}` names no numbered equation of the book"
                    )
                return f"({self.equations[body]})"
            if kind == "numref":
                if body not in self.exercises:
                    raise ConversionError(
                        f"{self.name}: {{numref}}`{body}` names no exercise of the book"
                    )
                return f"Exercise {self.exercises[body]}"
            if kind == "doc":
                m2 = re.fullmatch(r"(?:(?P<text>.*?)\s*<)?(?P<target>[^<>]+?)>?", body.strip())
                target = (Path(self.docname).parent / m2.group("target")).as_posix()
                if target not in self.titles and (self.root / f"{target}.md").is_file():
                    # An appendix page (plain Markdown, no Colab edition): link to it on GitHub.
                    return f"[{m2.group('text') or target.rsplit('/', 1)[-1]}]({markdown_link(self.root, target)})"
                if target not in self.titles:
                    raise ConversionError(
                        f"{self.name}: {{doc}}`{body}` is not a chapter of the book"
                    )
                return (
                    f"[{m2.group('text') or self.titles[target]}]({colab_link(self.root, target)})"
                )
            raise ConversionError(
                f"{self.name}: the role {{{kind}}} has no Colab form; add it to scripts/make_colab.py"
            )

        return ROLE_RE.sub(role, text)

    # -- directives
    def directive(self, name: str, arg: str, body: str) -> str:
        options, lines = {}, body.split("\n")
        while lines and re.match(r"^:[\w-]+:", lines[0]):
            key, _, value = lines.pop(0)[1:].partition(":")
            options[key] = value.strip()
        content = "\n".join(lines).strip("\n")
        if name == "literalinclude":
            path = (self.root / Path(self.docname).parent / arg.strip()).resolve()
            if "pyobject" not in options:
                raise ConversionError(
                    f"{self.name}: literalinclude {arg} without :pyobject: (the edition shows objects)"
                )
            rel = path.relative_to(self.root).as_posix()
            code = pyobject_source(path, options["pyobject"])
            return f"From `{rel}`, `{options['pyobject']}`:\n\n```python\n{code}\n```"
        if name == "exercise":
            label = options.get("label", "")
            number = self.exercises.get(label)
            if number is None:
                raise ConversionError(f"{self.name}: exercise {arg!r} has no :label:")
            return (
                f"#### Exercise {number}: {self.roles(arg.strip())}\n\n{self.convert_text(content)}"
            )
        if name == "solution-start":
            label = arg.strip()
            if label not in self.exercises:
                raise ConversionError(
                    f"{self.name}: solution-start {label!r} names no exercise of the book"
                )
            if content:
                raise ConversionError(
                    f"{self.name}: solution-start {label!r} holds text; put it after the fence"
                )
            self.in_solution = label
            return f"{SOL_START}{label}{SOL_START}"
        if name == "solution-end":
            if self.in_solution is None:
                raise ConversionError(
                    f"{self.name}: a solution-end with no solution-start before it"
                )
            self.in_solution = None
            return SOL_END
        if name in ("admonition", "note", "warning", "tip", "important", "caution"):
            title = self.roles(arg.strip()) if name == "admonition" else name.capitalize()
            inner = self.convert_text(content)
            quoted = "\n".join(f"> {x}" if x else ">" for x in inner.split("\n"))
            return f"> **{title}**\n>\n{quoted}"
        if name == "bibliography":
            if not self.cited:
                return ""
            keys = sorted(self.cited, key=lambda k: (self.bib.names(k), self.bib.year(k)))
            return "\n".join(f"- {self.bib.entry(k)}" for k in keys)
        raise ConversionError(
            f"{self.name}: the directive {{{name}}} has no Colab form; add it to scripts/make_colab.py"
        )

    def convert_text(self, text: str) -> str:
        """A markdown cell's text with every MyST construct replaced by CommonMark."""
        # A MyST target becomes an HTML anchor, so that "[check](#label)" links still land.
        text = TARGET_RE.sub(lambda m: f'<a id="{m.group("label")}"></a>', text)
        text = COMMENT_RE.sub("", text)
        out, lines, i = [], text.split("\n"), 0
        while i < len(lines):
            m = FENCE_RE.match(lines[i])
            if not m:
                out.append(lines[i])
                i += 1
                continue
            fence, j = m.group("fence"), i + 1
            while j < len(lines) and not re.fullmatch(
                rf"{re.escape(fence[0])}{{{len(fence)},}}\s*", lines[j]
            ):
                j += 1
            if j == len(lines):
                raise ConversionError(
                    f"{self.name}: the {{{m.group('name')}}} fence is never closed"
                )
            out.append(self.directive(m.group("name"), m.group("arg"), "\n".join(lines[i + 1 : j])))
            i = j + 1
        text = "\n".join(out)
        text = LABELLED_MATH_RE.sub(
            lambda m: (
                f"$${m.group('body').rstrip()} \\tag{{{self.equations[m.group('label')]}}}\n$$"
                if m.group("body").endswith("\n")
                else f"$${m.group('body')} \\tag{{{self.equations[m.group('label')]}}}$$"
            ),
            text,
        )
        return self.roles(text)

    def fold_solutions(self, text: str, inside: bool) -> str:
        """Solution text goes in <details> under a "Solution to Exercise" heading; code cells fold in Colab."""
        out = []
        for piece in re.split(f"({SOL_START}[^\x00]*{SOL_START}|{SOL_END})", text):
            if piece.startswith(SOL_START):
                label = piece[len(SOL_START) : -len(SOL_START)]
                out.append(
                    f"#### Solution to Exercise {self.exercises[label]}\n\n"
                    "*Folded: open the text below, and click a code cell to show its code.*\n\n"
                )
                inside = True
            elif piece == SOL_END:
                inside = False
            elif inside and piece.strip():
                out.append(
                    f"<details><summary>Show the solution</summary>\n\n{piece.strip()}\n\n</details>\n"
                )
            else:
                out.append(piece)
        return "".join(out)

    def convert(self, nb: dict) -> dict:
        nb = copy.deepcopy(nb)
        cells = []
        for cell in nb["cells"]:
            if cell["cell_type"] == "markdown":
                inside = self.in_solution is not None
                text = self.fold_solutions(self.convert_text("".join(cell["source"])), inside)
                if not text.strip():
                    continue
                cell["source"] = text.strip("\n").splitlines(keepends=True)
            elif cell["cell_type"] == "code" and self.in_solution:
                title = f"# @title Solution to Exercise {self.exercises[self.in_solution]} (code)\n"
                cell["source"] = (
                    [title] + list(cell["source"])
                    if isinstance(cell["source"], list)
                    else title + cell["source"]
                )
                cell.setdefault("metadata", {})["cellView"] = "form"
            cells.append(cell)
        if self.in_solution:
            raise ConversionError(
                f"{self.name}: solution-start {self.in_solution!r} is never ended"
            )
        banner = (
            f"*This is the Colab edition of chapter {self.number} of the course "
            "[Variational auto-encoders, derived and verified]"
            f"({load_yaml(self.root / '_config.yml')['repository']['url']}). It is generated from "
            f"`{self.docname}.ipynb` by `scripts/make_colab.py`: change that file, not this one. The package "
            "source the book shows is here as code; the set-up cell below installs the package.*"
        )
        cells.insert(
            1, {"cell_type": "markdown", "id": "colab-edition", "metadata": {}, "source": [banner]}
        )
        nb["cells"] = cells
        nb["metadata"]["colab"] = {"provenance": [], "toc_visible": True}
        return nb


def chapter_title(nb: dict) -> str:
    first = "".join(nb["cells"][0]["source"])
    return first.split("\n", 1)[0].removeprefix("# ").strip()


def build(root: Path = ROOT) -> dict[Path, str]:
    """{output path: text} for every numbered chapter that is a notebook."""
    bib = Bibliography(root / load_yaml(root / "_config.yml")["bibtex_bibfiles"][0])
    chapters = [d for d in numbered_chapters(root) if (root / f"{d}.ipynb").is_file()]
    books = {d: json.loads((root / f"{d}.ipynb").read_text(encoding="utf-8")) for d in chapters}
    titles = {d: chapter_title(nb) for d, nb in books.items()}
    # Equations and exercises are numbered chapter by chapter, and {eq} may point into another chapter.
    converters = {}
    equations: dict[str, str] = {}
    exercises: dict[str, str] = {}
    for number, docname in enumerate(numbered_chapters(root), start=1):
        if docname in books:
            converters[docname] = c = Chapter(root, docname, number, bib, titles)
            c.number_things(books[docname]["cells"])
            equations.update(c.equations)
            exercises.update(c.exercises)
    out = {}
    for docname, c in converters.items():
        c.equations, c.exercises = equations, exercises
        nb = c.convert(books[docname])
        out[root / "colab" / f"{docname}.ipynb"] = (
            json.dumps(nb, indent=1, ensure_ascii=False) + "\n"
        )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check that colab/ is up to date")
    parser.add_argument("--root", type=Path, default=ROOT, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    try:
        files = build(args.root)
    except ConversionError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    stale = [
        p for p, text in files.items() if not p.is_file() or p.read_text(encoding="utf-8") != text
    ]
    extra = sorted(set((args.root / "colab").rglob("*.ipynb")) - set(files))
    if args.check:
        for p in stale:
            print(f"out of date: {p.relative_to(args.root)}", file=sys.stderr)
        for p in extra:
            print(f"not generated from a chapter: {p.relative_to(args.root)}", file=sys.stderr)
        if stale or extra:
            print("run `python scripts/make_colab.py` and commit colab/", file=sys.stderr)
            return 1
        print(f"colab/: {len(files)} chapters, up to date")
        return 0
    for p in stale:
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_suffix(".ipynb.tmp")
        tmp.write_text(files[p], encoding="utf-8")
        tmp.replace(p)
        print(f"wrote {p.relative_to(args.root)}")
    for p in extra:
        p.unlink()
        print(f"removed {p.relative_to(args.root)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
