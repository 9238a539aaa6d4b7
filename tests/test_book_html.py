"""Build the book and look at every page in a real browser.

1. ``jupyter-book build . -W -n --keep-going`` from a clean ``_build/html``: the
   build must succeed with no warning.
2. ``_build/html`` is served over http on 127.0.0.1 (a random free port) and every
   page is opened in headless Chromium (Debian's ``/usr/bin/chromium``, driven by
   Playwright; nothing downloads a browser). On each page:

   * MathJax (vendored, see ``_vendor/mathjax``) finished, with the config Jupyter
     Book/MyST gives it; every ``.math`` element holds an ``mjx-container``; no
     ``mjx-merror`` or undefined macro; no raw ``$$``, ``\\[``, ``\\(`` or TeX
     command left in the text outside code;
   * every image loaded (``naturalWidth > 0``);
   * every link to the site itself resolves, anchors included;
   * nothing was requested from any host but the local server, and no local
     request failed (fonts, scripts, CSS, images);
   * each chapter's Colab link opens that chapter's notebook in the repository of
     ``repository.url`` on branch main, and its download link serves the notebook;
   * no code cell and no code block of the text (the package source that ``literalinclude``
     shows) scrolls sideways at 1280 x 800 (``scrollWidth > clientWidth``), and at most two cell
     outputs do (``_theme/course.css`` sets the code column; ruff's line-length fills it);
   * a full-page screenshot goes to ``_build/screenshots/``.

Without Chromium the page tests skip, saying how to install it; with
``VAE_COURSE_REQUIRE_BROWSER=1`` (``.ci/run`` sets it) they fail instead. The build test runs
either way.
"""

from __future__ import annotations

import functools
import html.parser
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import unquote, urldefrag, urlsplit

import pytest
from booktools import load_config, toc_files

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / "_build"
HTML = BUILD / "html"
SCREENSHOTS = BUILD / "screenshots"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
# A laptop's screen: at this size no code block may scroll sideways (see _theme/course.css).
VIEWPORT = {"width": 1280, "height": 800}
# Cell outputs that may scroll sideways on one page (a wide table, a training log); code never.
MAX_WIDE_OUTPUTS = 2
# Set to 1 (as .ci/run does) to make a missing Chromium fail the browser tests instead of skip them.
REQUIRE_BROWSER = "VAE_COURSE_REQUIRE_BROWSER"
BUILD_COMMAND = ["jupyter-book", "build", ".", "-W", "-n", "--keep-going"]

# Console messages that are known, harmless, and not ours to fix. Anything else fails.
KNOWN_CONSOLE_ERRORS = [
    # Sphinx 7.4.7's HTML builder re-adds inline scripts registered after Builder.init()
    # (prepare_writing passes filename '' where the first copy has None), so
    # sphinx-thebe's `const THEBE_JS_URL = ...` block is on every page twice and the
    # second copy is a SyntaxError. The first copy ran; thebe is not used by this book.
    "Identifier 'THEBE_JS_URL' has already been declared",
    # pydata-sphinx-theme on a browser profile with no stored light/dark choice.
    "Got invalid theme mode: . Resetting to auto.",
]


# ------------------------------------------------------------------ the book
def chapter_notebook(docname):
    """``book/NN_name.ipynb`` when this toc entry is a notebook, else None."""
    path = ROOT / f"{docname}.ipynb"
    return path if path.is_file() else None


# Every page of the site: the toc's documents, the index redirect and Sphinx's own pages.
PAGES = ["index.html"] + [f"{d}.html" for d in toc_files()] + ["genindex.html", "search.html"]


@pytest.fixture(scope="module")
def build():
    """Build the book from scratch once for this module; the tests judge the result."""
    for stale in (HTML, BUILD / ".doctrees", BUILD / "jupyter_execute", SCREENSHOTS):
        shutil.rmtree(stale, ignore_errors=True)
    exe = Path(sys.executable).with_name("jupyter-book")
    command = [str(exe) if exe.exists() else BUILD_COMMAND[0]] + BUILD_COMMAND[1:]
    env = {**os.environ, "NO_COLOR": "1"}
    start = time.monotonic()
    proc = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800)
    seconds = time.monotonic() - start
    log = re.sub(r"\x1b\[[0-9;]*m", "", proc.stdout + proc.stderr)
    warnings = [
        line for line in log.splitlines() if re.search(r"\b(WARNING|ERROR|CRITICAL|SEVERE)\b", line)
    ]
    print(
        f"\nbook build: {seconds:.1f} s, exit status {proc.returncode}, {len(warnings)} warning(s)"
    )
    return {"returncode": proc.returncode, "log": log, "warnings": warnings, "seconds": seconds}


def test_build_passes_without_warnings(build):
    assert build["returncode"] == 0 and not build["warnings"], (
        f"`{' '.join(BUILD_COMMAND)}` failed (exit status {build['returncode']}) "
        f"with {len(build['warnings'])} warning(s):\n"
        + "\n".join(build["warnings"] or build["log"].splitlines()[-30:])
    )
    assert "build succeeded" in build["log"], build["log"][-3000:]


# ------------------------------------------------------- server and browser
class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server(build):
    httpd = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(HTML))
    )
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()
    httpd.server_close()


class _Browser:
    """Chromium, started by the first test that needs it (so a missing one FAILS that test)."""

    def __init__(self):
        self._playwright = self._browser = None

    def get(self):
        if self._browser is None:
            if not (CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK)):
                how = (
                    f"Chromium not found at {CHROMIUM}: the browser test needs Debian's chromium. To run it, "
                    "install it with `apt-get update && apt-get install -y chromium`; never `playwright install` "
                    "(nothing may download its own browser)."
                )
                if os.environ.get(REQUIRE_BROWSER) == "1":
                    pytest.fail(f"{how} {REQUIRE_BROWSER}=1 (set by .ci/run) makes this a failure.")
                pytest.skip(
                    f"{how} Skipped; with {REQUIRE_BROWSER}=1 (as .ci/run sets) it fails instead."
                )
            from playwright.sync_api import sync_playwright

            self._playwright = sync_playwright().start()
            self._browser = self._playwright.chromium.launch(
                executable_path=str(CHROMIUM), args=CHROMIUM_ARGS
            )
        return self._browser

    def close(self):
        if self._browser is not None:
            self._browser.close()
        if self._playwright is not None:
            self._playwright.stop()


@pytest.fixture(scope="module")
def chromium():
    browser = _Browser()
    yield browser
    browser.close()


# --------------------------------------------------------- anchors on disk
class _Ids(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.ids = set()

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if name == "id" or (tag == "a" and name == "name"):
                self.ids.add(value)


@functools.cache
def ids_in(path: Path):
    parser = _Ids()
    parser.feed(path.read_text(encoding="utf-8", errors="replace"))
    return frozenset(parser.ids)


def local_target(url_path: str) -> Path:
    path = HTML / unquote(url_path).lstrip("/")
    return path / "index.html" if url_path.endswith("/") or path.is_dir() else path


# ----------------------------------------------------------- in the page
# Sphinx adds MathJax only to pages with math; where it is, wait until it has typeset everything.
WAIT_FOR_MATHJAX = """async () => {
  if (![...document.scripts].some(s => /mathjax/i.test(s.src))) return 'no MathJax on this page';
  for (let i = 0; i < 300 && !(window.MathJax && MathJax.startup && MathJax.startup.promise); i++)
    await new Promise(r => setTimeout(r, 100));
  if (!(window.MathJax && MathJax.startup && MathJax.startup.promise)) return 'MathJax never started';
  const late = (ms, what) => new Promise(r => setTimeout(() => r(what), ms));
  const done = await Promise.race([MathJax.startup.promise.then(() => 'typeset'), late(60000, 'MathJax still typesetting after 60 s')]);
  if (done !== 'typeset') return done;
  return await Promise.race([document.fonts.ready.then(() => 'typeset'), late(20000, 'fonts still loading after 20 s')]);
}"""

INSPECT = r"""async () => {
  const out = {};
  // --- MathJax
  out.mathjaxScripts = [...document.scripts].map(s => s.src).filter(s => /mathjax/i.test(s));
  const mj = (window.MathJax && MathJax.startup && MathJax.startup.document) ? MathJax : null;
  out.mathjaxVersion = mj ? mj.version : null;
  out.processHtmlClass = mj ? ((mj.config || {}).options || {}).processHtmlClass || null : null;
  const mathEls = [...document.querySelectorAll('span.math, div.math')];
  out.mathElements = mathEls.length;
  out.unrendered = mathEls.filter(e => !e.querySelector('mjx-container')).map(e => e.textContent.slice(0, 120));
  out.containers = document.querySelectorAll('mjx-container').length;
  out.merrors = [...document.querySelectorAll('mjx-merror')].map(e => e.textContent.slice(0, 120));
  out.texErrors = [];
  for (const item of (mj ? mj.startup.document.math : [])) {
    const mml = MathJax.startup.toMML(item.root);
    if (/<merror|mathcolor="red"/.test(mml)) out.texErrors.push(String(item.math).slice(0, 160));
  }
  out.fontsLoaded = [...document.fonts].filter(f => /^MJX/.test(f.family) && f.status === 'loaded').map(f => f.family);
  out.fontsFailed = [...document.fonts].filter(f => /^MJX/.test(f.family) && f.status === 'error').map(f => f.family);
  // --- raw TeX in the text, outside code and outside typeset math
  const main = (document.querySelector('main') || document.body).cloneNode(true);
  main.querySelectorAll('pre, code, script, style, textarea, mjx-container, .highlight').forEach(e => e.remove());
  const text = main.textContent;
  const raw = [];
  for (const re of [/\$\$/g, /\\[\[\]\(\)]/g, /\\(begin|end)\{/g, /\\[A-Za-z]{2,}/g]) {
    for (const m of text.matchAll(re)) raw.push(text.slice(Math.max(0, m.index - 40), m.index + 40).replace(/\s+/g, ' '));
  }
  out.rawTex = raw;
  // --- images
  for (const img of document.images) img.loading = 'eager';
  await Promise.all([...document.images].map(img => img.complete ? null :
    new Promise(r => { img.addEventListener('load', r); img.addEventListener('error', r); setTimeout(r, 10000); })));
  out.images = [...document.images].map(img => ({src: img.currentSrc || img.src, ok: img.complete && img.naturalWidth > 0}));
  // --- links
  out.links = [...document.querySelectorAll('a[href]')].map(a => a.href);
  out.title = document.title;
  // --- the first visible element of the article, and the equation and exercise numbers
  const article = document.querySelector('article.bd-article') || document.querySelector('main');
  const firstVisible = [...article.querySelectorAll('*')].find(e =>
    e.children.length === 0 && e.offsetParent !== null && e.textContent.trim() !== '');
  const heading = firstVisible && firstVisible.closest('h1, h2, h3, h4, h5, h6');
  out.firstElement = heading ? heading.tagName : (firstVisible ? firstVisible.tagName + ': ' + firstVisible.textContent.trim().slice(0, 60) : null);
  out.eqnos = [...document.querySelectorAll('span.eqno')].map(e => (e.textContent.match(/[\d.]+/) || [''])[0]);
  out.exercises = [...document.querySelectorAll('div.exercise p.admonition-title span.caption-number')].map(e => (e.textContent.match(/[\d.]+/) || [''])[0]);
  // --- code that scrolls sideways: every block of code in the article (a cell's input, a cell's
  // output, or a code block of the text: a literalinclude of the package, a fenced block)
  out.codeBlocks = {input: 0, output: 0, text: 0};
  out.overflow = [];
  for (const pre of article.querySelectorAll('div.highlight pre')) {
    const kind = pre.closest('.cell_output') ? 'output' : (pre.closest('.cell_input') ? 'input' : 'text');
    out.codeBlocks[kind] += 1;
    const lines = pre.textContent.split('\n');
    const widest = lines.reduce((a, b) => (b.length > a.length ? b : a), '');
    if (pre.clientWidth === 0 || pre.scrollWidth > pre.clientWidth)
      out.overflow.push({kind, pixels: pre.scrollWidth - pre.clientWidth, laidOut: pre.clientWidth > 0,
                         language: ((pre.closest('[class*="highlight-"]') || {}).className || '').match(/highlight-(\w+)/)?.[1] || '',
                         chars: widest.length, line: widest.trim().slice(0, 90)});
  }
  return out;
}"""


@pytest.mark.parametrize("page_path", PAGES)
def test_page_renders(page_path, build, server, chromium):
    start = time.monotonic()
    if not (HTML / page_path).is_file():
        pytest.fail(
            f"the build did not produce {page_path} (see test_build_passes_without_warnings)"
        )
    browser = chromium.get()
    context = browser.new_context(viewport=VIEWPORT)
    foreign, failed, console = [], [], []

    def route(r):
        url = r.request.url
        if url.startswith(server) or url.startswith("data:") or url.startswith("blob:"):
            r.continue_()
        else:
            foreign.append(f"{r.request.resource_type} {url}")
            r.abort()

    context.route("**/*", route)
    page = context.new_page()
    page.on(
        "response",
        lambda resp: resp.status >= 400 and failed.append(f"HTTP {resp.status} {resp.url}"),
    )
    page.on(
        "requestfailed",
        lambda req: req.url.startswith(server) and failed.append(f"{req.failure} {req.url}"),
    )
    page.on("pageerror", lambda err: console.append(f"uncaught: {err}"))
    page.on("console", lambda msg: msg.type == "error" and console.append(msg.text))
    try:
        page.goto(server + page_path, wait_until="load")
        if page_path == "index.html":  # the redirect to the landing page
            page.wait_for_url(re.compile(r".*/book/intro\.html$"), timeout=10000)
            page.wait_for_load_state("load")
        mathjax = page.evaluate(WAIT_FOR_MATHJAX)
        info = page.evaluate(INSPECT)
        shot = SCREENSHOTS / page_path.replace(".html", ".png")
        shot.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(shot), full_page=True)
        page_url = page.url
    finally:
        context.close()

    problems = []
    served = (HTML / urlsplit(page_url).path.lstrip("/")).read_text(encoding="utf-8")
    has_math = 'class="math' in served
    # MathJax: the vendored copy, once, with MyST's configuration.
    if has_math or info["mathjaxScripts"]:
        if mathjax != "typeset":
            problems.append(f"MathJax: {mathjax}")
        if len(info["mathjaxScripts"]) != 1 or not info["mathjaxScripts"][0].startswith(
            server + "_static/mathjax/"
        ):
            problems.append(
                f"MathJax must be loaded once, from _static/mathjax/: {info['mathjaxScripts']}"
            )
        if not str(info["mathjaxVersion"]).startswith("3."):
            problems.append(f"MathJax version {info['mathjaxVersion']}, expected 3.x")
        if not info["processHtmlClass"] or "math" not in info["processHtmlClass"].split("|"):
            problems.append(
                f"MathJax config lost MyST's processHtmlClass: {info['processHtmlClass']!r}"
            )
    if has_math and info["containers"] == 0:
        problems.append("the page has math but no mjx-container: MathJax did not typeset it")
    if has_math and not info["fontsLoaded"]:
        problems.append("no MathJax font loaded")
    for what in ("unrendered", "merrors", "texErrors", "fontsFailed", "rawTex"):
        if info[what]:
            problems.append(f"{what}: {info[what][:10]}")
    # Images.
    broken = [i["src"] for i in info["images"] if not i["ok"]]
    if broken:
        problems.append(f"images that did not load: {broken}")
    # Links to the site itself, anchors included.
    for href in sorted(set(info["links"])):
        if not href.startswith(server):
            continue
        url, fragment = urldefrag(href)
        target = local_target(urlsplit(url).path)
        if not target.is_file():
            problems.append(f"link to a missing file: {href}")
        elif fragment and target.suffix == ".html" and unquote(fragment) not in ids_in(target):
            problems.append(f"link to a missing anchor: {href}")
    # Network: nothing from elsewhere, nothing local missing, no script errors.
    if foreign:
        problems.append(f"requests to other hosts: {foreign}")
    if failed:
        problems.append(f"failed requests: {failed}")
    unexpected = [c for c in console if not any(k in c for k in KNOWN_CONSOLE_ERRORS)]
    if unexpected:
        problems.append(f"console errors: {unexpected}")
    # Code that scrolls sideways at 1280 x 800: no code cell or code block of the text (the
    # package's source, shown by literalinclude), and at most MAX_WIDE_OUTPUTS cell outputs.
    names = {
        "input": "code cell",
        "text": "code block in the text (literalinclude or fenced)",
        "output": "cell output",
    }
    for block in info["overflow"]:
        if block["kind"] != "output" or not block["laidOut"]:
            what = (
                f"{block['pixels']} px too wide"
                if block["laidOut"]
                else "not laid out, so not measured"
            )
            fix = (
                "`ruff format` the code (pyproject.toml's line-length) and wrap the strings and comments "
                "ruff leaves long"
                if block["language"] not in ("bash", "console", "shell", "sh", "text", "none")
                else "wrap its long lines (a shell command goes on after a backslash)"
            )
            problems.append(
                f"{names[block['kind']]} scrolls sideways ({what}; its widest line, {block['chars']} characters: "
                f"{block['line']!r}). Fix: {fix}"
            )
    wide_outputs = [b for b in info["overflow"] if b["kind"] == "output" and b["laidOut"]]
    if len(wide_outputs) > MAX_WIDE_OUTPUTS:
        problems.append(
            f"{len(wide_outputs)} cell outputs scroll sideways, at most {MAX_WIDE_OUTPUTS} may: "
            + "; ".join(f"{b['chars']} characters: {b['line']!r}" for b in wide_outputs)
        )

    # Chapters: Colab and download links.
    docname = page_path[: -len(".html")]
    notebook = chapter_notebook(docname)
    colab = sorted({h for h in info["links"] if "colab.research.google.com" in h})
    if notebook is not None:
        repo = load_config()["repository"]
        owner_repo = urlsplit(repo["url"]).path.strip("/")
        rel = notebook.relative_to(ROOT).as_posix()
        expected = f"https://colab.research.google.com/github/{owner_repo}/blob/{repo['branch']}/colab/{rel}"
        if colab != [expected]:
            problems.append(f"Colab link {colab}, expected [{expected!r}]")
        if repo["branch"] != "main" or not re.fullmatch(r"book/\d\d_[a-z0-9_]+\.ipynb", rel):
            problems.append(
                f"Colab link must open colab/book/NN_name.ipynb on main, not {rel} on {repo['branch']}"
            )
        if not (ROOT / "colab" / rel).is_file():
            problems.append(
                f"the Colab link opens colab/{rel}, which does not exist (scripts/make_colab.py)"
            )
        # Title first: the first thing in the article is the chapter's H1 (the set-up cell is removed).
        if info["firstElement"] != "H1":
            problems.append(
                f"the chapter's first visible element is {info['firstElement']!r}, not its title (H1)"
            )
        # The Colab edition numbers equations and exercises as the book does.
        cells = json.loads((ROOT / "colab" / rel).read_text(encoding="utf-8"))["cells"]
        edition = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
        tags = re.findall(r"\\tag\{([\d.]+)\}", edition)
        if tags != info["eqnos"]:
            problems.append(
                f"equation numbers: the book has {info['eqnos']}, the Colab edition {tags}"
            )
        exercises = re.findall(r"#### Exercise ([\d.]+):", edition)
        if exercises != info["exercises"]:
            problems.append(
                f"exercises: the book has {info['exercises']}, the Colab edition {exercises}"
            )
        download = server + "_sources/" + rel
        if download not in info["links"]:
            problems.append(f"no download link to {download}")
        elif json.loads((HTML / "_sources" / rel).read_text(encoding="utf-8")) != json.loads(
            notebook.read_text(encoding="utf-8")
        ):
            problems.append(f"the downloadable {rel} differs from the repository's")
        if not has_math:
            problems.append("a chapter with no math at all")
    elif colab:
        problems.append(f"a Colab link on a page that is not a notebook: {colab}")

    seconds = time.monotonic() - start
    print(
        f"\n{page_path}: {info['containers']} formulas, {len(info['images'])} images, "
        f"{len(set(info['links']))} links, code blocks {info['codeBlocks']} ({len(info['overflow'])} too wide), "
        f"{seconds:.1f} s"
    )
    assert not problems, f"{page_path}:\n  " + "\n  ".join(problems)


def test_every_built_page_was_checked(build):
    """A page the build made but PAGES does not list would go unchecked."""
    built = {
        p.relative_to(HTML).as_posix()
        for p in HTML.rglob("*.html")
        if p.relative_to(HTML).parts[0] not in ("_static", "_sources", "_images")
    }
    assert built, "the build produced no page"
    assert built <= set(PAGES), f"pages built but not checked: {sorted(built - set(PAGES))}"
