"""The built HTML docs, checked in a real headless browser (Debian's chromium).

Sphinx builds the docs with warnings as errors; the build is served on 127.0.0.1 and every page is
loaded in chromium. The server appends a small script to each page that, once the page has
loaded, writes the sources of the images that did not load into the DOM, which chromium's
``--dump-dom`` then prints: so "every image loads" is the browser's own verdict
(``naturalWidth``), not a guess from the HTML. Internal links are checked against the built files
and their anchors. Without chromium the test skips, except under ``CI=true``, where it fails.
"""

from __future__ import annotations

import functools
import html.parser
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urldefrag, urlsplit

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
REPORT = (
    b"<script>window.addEventListener('load', () => {"
    b"const broken = [...document.images].filter(i => !i.complete || i.naturalWidth === 0)"
    b".map(i => i.src);"
    b"document.body.setAttribute('data-check', 'loaded');"
    b"document.body.setAttribute('data-broken-images', JSON.stringify(broken));});</script>"
)


#: Broken today, owned elsewhere: SECURITY.md (included by docs/security.md) links
#: ``docs/hardening.md``, right on GitHub but ``docs/docs/hardening.md`` in the built site. Listed
#: exactly, so that a new broken link fails and so does this one's fix (then empty the list).
KNOWN_BROKEN: list[str] = []


class _Links(html.parser.HTMLParser):
    """The hrefs, image sources and element ids of one page."""

    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []
        self.images: list[str] = []
        self.ids: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if values.get("id"):
            self.ids.add(str(values["id"]))
        if tag == "a" and values.get("href"):
            self.hrefs.append(str(values["href"]))
        if tag == "img" and values.get("src"):
            self.images.append(str(values["src"]))


def _parse(page: Path) -> _Links:
    links = _Links()
    links.feed(page.read_text(encoding="utf-8"))
    return links


class _Reporting(SimpleHTTPRequestHandler):
    """Serves the build, with the image report appended to each HTML page."""

    def send_head(self):  # type: ignore[no-untyped-def]
        path = Path(self.translate_path(self.path))
        if path.suffix != ".html" or not path.is_file():
            return super().send_head()
        body = path.read_bytes().replace(b"</body>", REPORT + b"</body>")
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        import io

        return io.BytesIO(body)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: the test reports what matters."""


@pytest.fixture(scope="module")
def built() -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as directory:
        out = Path(directory) / "html"
        result = subprocess.run(
            [sys.executable, "-m", "sphinx", "-W", "-q", "-b", "html", str(ROOT / "docs"), out],
            check=False,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 0, result.stderr
        yield out


@pytest.fixture(scope="module")
def served(built: Path) -> Iterator[str]:
    handler = functools.partial(_Reporting, directory=str(built))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _title(page: str) -> str:
    """The page's ``<title>`` element as Sphinx wrote it, which the rendered DOM must keep."""
    start = page.index("<title>")
    return page[start : page.index("</title>", start) + len("</title>")]


def _pages(built: Path) -> list[Path]:
    return sorted(p for p in built.rglob("*.html") if "_static" not in p.parts)


def _chromium() -> str:
    if shutil.which(CHROMIUM):
        return CHROMIUM
    if os.environ.get("CI") == "true":
        pytest.fail(f"{CHROMIUM} is missing; scripts/setup installs it (apt-get install chromium)")
    pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium); required under CI")


def _dump_dom(browser: str, url: str) -> str:
    with tempfile.TemporaryDirectory() as profile:
        result = subprocess.run(
            [
                browser,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                f"--user-data-dir={profile}",
                "--virtual-time-budget=10000",
                "--dump-dom",
                url,
            ],
            check=False,
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def test_every_internal_link_and_image_points_at_a_built_file(built: Path) -> None:
    broken = []
    anchors = {page: _parse(page).ids for page in _pages(built)}
    for page in _pages(built):
        links = _parse(page)
        for reference in links.hrefs + links.images:
            if urlsplit(reference).scheme or reference.startswith(("//", "mailto:")):
                continue
            target, fragment = urldefrag(reference)
            path = (page.parent / unquote(target)).resolve() if target else page
            if not path.is_file():
                broken.append(f"{page.name}: {reference} (no such file)")
            elif fragment and path.suffix == ".html" and fragment not in anchors.get(path, set()):
                broken.append(f"{page.name}: {reference} (no such anchor)")
    assert broken == KNOWN_BROKEN, "\n".join(broken)


def test_every_page_renders_in_chromium_with_every_image_loaded(built: Path, served: str) -> None:
    browser = _chromium()
    pages = _pages(built)
    assert len(pages) >= 10
    problems = []
    for page in pages:
        url = f"{served}/{page.relative_to(built).as_posix()}"
        dom = _dump_dom(browser, url)
        if 'data-check="loaded"' not in dom:
            problems.append(f"{url}: did not finish loading")
        elif 'data-broken-images="[]"' not in dom:
            start = dom.index("data-broken-images=")
            problems.append(f"{url}: images did not load: {dom[start : start + 300]}")
        elif _title(page.read_text(encoding="utf-8")) not in dom:
            problems.append(f"{url}: rendered without its title")
    assert not problems, "\n".join(problems)
