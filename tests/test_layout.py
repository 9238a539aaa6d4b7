"""The package's layout: the top level is the course, ``vae_course.tools`` the infrastructure.

* importing any top-level module imports nothing from ``vae_course.tools`` (a reader of a chapter
  never has to open the infrastructure to follow an import);
* every ``{literalinclude}`` of a chapter names a package file that exists and a ``:pyobject:`` that
  file defines, so a module move that forgets a chapter fails here, before a book build.
"""

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "vae_course"
TOP_LEVEL = sorted(p.stem for p in PACKAGE.glob("*.py") if p.stem not in ("__init__", "__main__"))
TOOLS = sorted(p.stem for p in (PACKAGE / "tools").glob("*.py") if p.stem != "__init__")
NOTEBOOKS = sorted((ROOT / "book").glob("*.ipynb"))
LITERALINCLUDE = re.compile(r"```\{literalinclude\}\s*(\S+)\s*\n((?::[\w-]+:[^\n]*\n)*)")


def test_the_layout_has_both_levels():
    assert {"montecarlo", "gradients", "gaussian", "losses", "models", "train", "evaluate"} <= set(
        TOP_LEVEL
    )
    assert {
        "cli",
        "commands",
        "callbacks",
        "checkpoints",
        "atomic",
        "fetch",
        "cache",
        "course_models",
    } <= set(TOOLS)
    assert not set(TOP_LEVEL) & set(TOOLS), "a module name at both levels"


PROBE = """
import importlib, sys
tools = lambda: sorted(m for m in sys.modules if m == "vae_course.tools" or m.startswith("vae_course.tools."))
for name in sys.argv[1:]:
    importlib.import_module(name)
    print(name, tools())
"""


def first_tools_imports(modules):
    """Import ``modules`` one after another in a fresh Python; {module: the tools modules loaded once it was}.

    A module whose line is not ``[]`` is the first that (itself or through its imports) loaded a tools module.
    """
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, *modules],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    return dict(line.split(" ", 1) for line in proc.stdout.strip().splitlines())


def test_no_top_level_module_imports_tools():
    loaded = first_tools_imports([f"vae_course.{m}" for m in TOP_LEVEL])
    assert len(loaded) == len(TOP_LEVEL)
    offenders = {m: t for m, t in loaded.items() if t != "[]"}
    assert not offenders, f"top-level modules that import vae_course.tools: {offenders}"


def test_the_probe_sees_a_tools_import():
    """Sanity check of the probe above: a module that imports tools is reported."""
    loaded = first_tools_imports(["vae_course.gaussian", "vae_course.tools.atomic"])
    assert loaded == {
        "vae_course.gaussian": "[]",
        "vae_course.tools.atomic": "['vae_course.tools', 'vae_course.tools.atomic']",
    }


def defined(path: Path, name: str) -> bool:
    """Whether ``path`` defines ``name`` (``func``, ``Class`` or ``Class.method``) at its top level."""
    node = ast.parse(path.read_text(encoding="utf-8"))
    for part in name.split("."):
        found = [
            n
            for n in getattr(node, "body", [])
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
            and n.name == part
        ]
        if not found:
            return False
        node = found[0]
    return True


def literalincludes(notebook: Path):
    for cell in json.loads(notebook.read_text(encoding="utf-8"))["cells"]:
        if cell["cell_type"] == "markdown":
            for m in LITERALINCLUDE.finditer("".join(cell["source"])):
                yield m.group(1), dict(re.findall(r":([\w-]+):\s*([^\n]*)", m.group(2)))


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_every_literalinclude_points_at_an_existing_object(notebook):
    found = list(literalincludes(notebook))
    for arg, options in found:
        path = (notebook.parent / arg).resolve()
        assert path.is_file(), f"{notebook.name}: literalinclude {arg}: no such file"
        assert path.is_relative_to(PACKAGE), (
            f"{notebook.name}: literalinclude {arg} is outside vae_course/"
        )
        name = options.get("pyobject")
        assert name, f"{notebook.name}: literalinclude {arg} without :pyobject:"
        assert defined(path, name), f"{notebook.name}: {arg} defines no {name!r}"


def test_readme_lists_every_module_with_about_its_line_count():
    """README's table names every module (top level and tools) with a line count within 20% of the file's."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    table = {m: int(n) for m, n in re.findall(r"^\| `([\w/]+)` \| (\d+) \|", text, re.M)}
    modules = set(TOP_LEVEL) | {f"tools/{m}" for m in TOOLS}
    assert set(table) == modules, (
        f"README lists {sorted(set(table) - modules)}, misses {sorted(modules - set(table))}"
    )
    for module, listed in table.items():
        actual = len((PACKAGE / f"{module}.py").read_text(encoding="utf-8").splitlines())
        assert abs(actual - listed) <= 0.2 * actual, (
            f"README gives {module} {listed} lines; it has {actual}"
        )
