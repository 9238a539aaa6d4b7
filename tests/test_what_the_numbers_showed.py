"""Chapters 6-8 end with "What the numbers showed": each line links to the cell whose assert would fail.

A line's link ``[...](#label)`` must name a MyST target ``(label)=`` that is the whole of a markdown
cell (so the Colab edition drops it), and the next cell must be a code cell with an ``assert``
statement, found by parsing the code (a comment that mentions "assert" does not count).
"""

from __future__ import annotations

import ast
import json
import re

import pytest
from booktools import ROOT

CHAPTERS = [
    "06_mnist_vae",
    "07_evaluating_the_vae",
    "08_where_the_nats_go",
    "09_closing_the_gaps",
    "10_likelihood_on_one_scale",
]
HEADING = "## What the numbers showed"
LINK_RE = re.compile(r"\]\(#(?P<label>[\w:.-]+)\)")
TARGET_RE = re.compile(r"^\((?P<label>[\w:.-]+)\)=\s*$")


def cells(chapter):
    nb = json.loads((ROOT / "book" / f"{chapter}.ipynb").read_text(encoding="utf-8"))
    return [(c["cell_type"], "".join(c["source"])) for c in nb["cells"]]


def summary_items(chapter):
    """The list items under the heading, up to the next heading: [(line, [labels])]."""
    for kind, text in cells(chapter):
        if kind == "markdown" and HEADING in text:
            block = text.split(HEADING, 1)[1].split("\n#", 1)[0]
            return [
                (line, LINK_RE.findall(line))
                for line in block.splitlines()
                if line.startswith("- ")
            ]
    raise AssertionError(f"{chapter}: no '{HEADING}' section")


def has_assert(code):
    source = "\n".join(
        line for line in code.splitlines() if not line.lstrip().startswith(("%", "!"))
    )
    return any(isinstance(node, ast.Assert) for node in ast.walk(ast.parse(source)))


def asserting_targets(chapter):
    """{label: True if the cell after its target cell is a code cell with an assert}."""
    cs = cells(chapter)
    out = {}
    for i, (kind, text) in enumerate(cs):
        m = TARGET_RE.match(text.strip()) if kind == "markdown" else None
        if m:
            nxt = cs[i + 1] if i + 1 < len(cs) else ("none", "")
            out[m.group("label")] = nxt[0] == "code" and has_assert(nxt[1])
    return out


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_every_item_links_to_an_asserting_code_cell(chapter):
    items = summary_items(chapter)
    assert len(items) >= 3, f"{chapter}: the summary lists {len(items)} items"
    targets = asserting_targets(chapter)
    for line, labels in items:
        assert labels, f"{chapter}: an item links to no cell: {line!r}"
        for label in labels:
            assert label in targets, (
                f"{chapter}: #{label} is not a target cell of the chapter ({line!r})"
            )
            assert targets[label], (
                f"{chapter}: the cell after target {label!r} is not a code cell that asserts"
            )


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_every_target_is_used_and_unique(chapter):
    labels = [
        m.group("label")
        for kind, text in cells(chapter)
        if kind == "markdown"
        for m in [TARGET_RE.match(text.strip())]
        if m
    ]
    assert len(labels) == len(set(labels)), f"{chapter}: a target label is repeated"
    linked = {label for _, ls in summary_items(chapter) for label in ls}
    assert set(labels) <= linked, (
        f"{chapter}: targets no item links to: {sorted(set(labels) - linked)}"
    )


def test_the_check_fails_on_a_cell_without_assert():
    assert not has_assert("# an assert in a comment\nx = 1\n")
    assert has_assert("%config X\nassert 1 + 1 == 2\n")
