"""The HTML gallery (gradcam_cli/report.py): links that resolve, names escaped and percent-encoded,
thumbnails kept apart, and the page driven in a real headless Chromium (the ``browser`` tests)."""

from __future__ import annotations

import json
import os
import shutil
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote

import pytest
from PIL import Image

from tests.corpus import NASTY
from tests.helpers import SHAPES, run


class Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.links: list[str] = []
        self.tags: list[tuple[str, dict]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        self.tags.append((tag, attributes))
        for key in ("src", "href"):
            if attributes.get(key):
                self.links.append(attributes[key])

    def handle_data(self, data):
        self.text.append(data)


def test_report_links_resolve_and_names_are_escaped(report_dir):
    page = (report_dir / "index.html").read_text(encoding="utf-8")
    parser = Links()
    parser.feed(page)
    assert parser.links, "the report links no picture"
    for link in parser.links:
        assert not link.startswith(("http:", "https:", "//", "/")), link
        assert (report_dir / unquote(link)).is_file(), link
    assert not any(tag == "img" and attributes.get("src") == "x" for tag, attributes in parser.tags)
    assert not any(tag == "b" for tag, _ in parser.tags)  # the <b> in a file name stays text
    text = "".join(parser.text)
    assert NASTY in text and "broken <b>bold.png" in text
    assert "not an image Pillow can read" in text
    cards = [attributes for tag, attributes in parser.tags if tag == "article"]
    assert len(cards) == 8
    summary = json.loads(page.split('id="summary">')[1].split("</script>")[0])
    assert summary == {"images": 8, "failed": 1, "methods": ["gradcam"]}


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def _browser_or_skip():
    """Debian's Chromium and playwright's driver; a failure under CI (which installs both), a skip
    elsewhere."""
    browser = _chromium()
    if browser is None:
        if os.environ.get("CI"):
            pytest.fail("CI must install chromium (see .ci/run)")
        pytest.skip("no chromium on this machine: apt-get install chromium")
    return browser, pytest.importorskip("playwright.sync_api")


@pytest.mark.slow
@pytest.mark.browser
def test_report_in_a_real_headless_browser(report_dir, tmp_path):
    """Opens index.html over file:// in Debian's Chromium (installed by .ci/run)."""
    browser, playwright = _browser_or_skip()
    errors: list[str] = []
    with playwright.sync_playwright() as driver:
        chrome = driver.chromium.launch(executable_path=browser, args=["--headless", "--no-sandbox", "--disable-gpu"])
        page = chrome.new_page(viewport={"width": 1400, "height": 1000})
        page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto((report_dir / "index.html").as_uri())
        page.wait_for_load_state("load")
        widths = page.eval_on_selector_all("img", "images => images.map(i => i.complete ? i.naturalWidth : 0)")
        assert widths and all(w > 0 for w in widths), widths
        classes = page.eval_on_selector_all("#class-filter option", "options => options.map(o => o.value)")
        wanted = next(value for value in classes if value)
        page.select_option("#class-filter", wanted)
        visible = page.eval_on_selector_all("article.card:not([hidden])", "cards => cards.map(c => c.dataset.class)")
        assert visible and set(visible) == {wanted}
        assert page.inner_text("#shown") == str(len(visible))
        page.select_option("#class-filter", "")
        page.select_option("#sort", "asc")
        confidences = page.eval_on_selector_all("article.card", "cards => cards.map(c => parseFloat(c.dataset.confidence))")
        shown = [c for c in confidences if c >= 0]
        assert shown == sorted(shown) and confidences[:len(shown)] == shown  # failed inputs (-1) last
        page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
        chrome.close()
    assert not errors, errors
    assert (tmp_path / "report.png").stat().st_size > 10_000


@pytest.mark.slow
def test_thumbnails_of_same_named_files_in_different_folders_stay_apart(tmp_path):
    source = tmp_path / "in"
    for folder, picture in (("a", "01_single_cross.png"), ("b", "03_single_triangle.png")):
        (source / folder).mkdir(parents=True)
        shutil.copy(SHAPES / picture, source / folder / "x.png")
    out = tmp_path / "out"
    assert run("explain", source, "-r", "-o", out, "--report", "-q").exit_code == 0
    parser = Links()
    parser.feed((out / "index.html").read_text(encoding="utf-8"))
    thumbs = [link for link in parser.links if link.startswith("thumbs/")]
    assert len(thumbs) == len(set(thumbs)) == 4
    originals = sorted(Image.open(out / unquote(link)).getpixel((40, 40)) for link in thumbs if "originals" in link)
    assert originals[0] != originals[1]


AWKWARD_NAMES = ["photo#1.jpg", "what?.png", "100%.png", "%41 literal.png", "my holiday.jpg", "café ünï 日本.png"]


@pytest.fixture(scope="module")
def awkward_report(tmp_path_factory):
    """Inputs whose names a browser would misread unless each path segment is percent-encoded."""
    source = tmp_path_factory.mktemp("awkward_in")
    pictures = sorted(SHAPES.glob("*.png"))
    for index, name in enumerate(AWKWARD_NAMES):
        folder = source / ("sub #2 ?x" if index % 2 else "")
        folder.mkdir(exist_ok=True)
        Image.open(pictures[index]).convert("RGB").save(folder / name)
    out = tmp_path_factory.mktemp("awkward out #%")
    result = run("explain", source, "-r", "-o", out, "--report", "-q")
    assert result.exit_code == 0, result.output
    return out


def test_report_links_to_awkward_names_are_percent_encoded(awkward_report):
    parser = Links()
    parser.feed((awkward_report / "index.html").read_text(encoding="utf-8"))
    assert len(parser.links) == 3 * len(AWKWARD_NAMES)  # original thumb, overlay link, overlay thumb
    for link in parser.links:
        assert not set(link) & set("#? ") and all(ord(c) < 128 for c in link), link
        assert (awkward_report / unquote(link)).is_file(), link
    text = "".join(parser.text)
    assert all(name in text for name in AWKWARD_NAMES)  # visible names stay as they are


@pytest.mark.slow
@pytest.mark.browser
def test_awkward_names_load_in_a_real_browser(awkward_report):
    browser, playwright = _browser_or_skip()
    with playwright.sync_playwright() as driver:
        chrome = driver.chromium.launch(executable_path=browser, args=["--headless", "--no-sandbox", "--disable-gpu"])
        page = chrome.new_page()
        page.goto((awkward_report / "index.html").as_uri())
        page.wait_for_load_state("load")
        widths = page.eval_on_selector_all("img", "images => images.map(i => i.complete ? i.naturalWidth : 0)")
        assert len(widths) == 2 * len(AWKWARD_NAMES) and all(w > 0 for w in widths), widths
        # every link, resolved by the browser itself against the page, loads as a picture
        targets = page.eval_on_selector_all("a[href]", """links => Promise.all(links.map(link => new Promise(done => {
            const probe = new Image();
            probe.onload = () => done([link.href, probe.naturalWidth]);
            probe.onerror = () => done([link.href, 0]);
            probe.src = link.href;
        })))""")
        chrome.close()
    assert len(targets) == len(AWKWARD_NAMES)
    for href, width in targets:
        assert width > 0, href
        assert Path(unquote(href.removeprefix("file://"))).is_file(), href


def _card(name: str, kind: str, value: float) -> dict:
    row = {"input": name, "method": "gradcam", "label": "x", "layer": "conv", "head": kind, "overlay": name,
           "probability" if kind == "softmax" else "value": value}
    return {"input": name, "targets": [row], "error": None, "top": [[0, "x", value]]}


@pytest.mark.slow
@pytest.mark.browser
def test_sort_names_what_it_orders_and_keeps_probabilities_apart_from_regression_values(tmp_path):
    """A regression's value (here 41.5) was sorted with softmax probabilities as one 'confidence'."""
    from gradcam_cli.report import _page

    softmax = [_card(f"p{i}.png", "softmax", p) for i, p in enumerate((0.2, 0.9, 0.5))]
    regression = [_card(f"r{i}.png", "regression", v) for i, v in enumerate((41.5, -3.0))]
    failed = [{"input": "bad.png", "targets": [], "error": "bad.png: cannot identify image file.", "top": []}]
    assert "sort by probability <select" in _page(softmax, tmp_path, set())
    assert "sort by predicted value <select" in _page(regression, tmp_path, set())
    mixed = _page(failed + softmax + regression, tmp_path, set())
    assert "sort by predicted value / probability (grouped by model head)" in mixed
    assert 'data-kind="predicted value"' in mixed and 'data-kind="probability"' in mixed
    (tmp_path / "index.html").write_text(mixed, encoding="utf-8")
    browser, playwright = _browser_or_skip()
    with playwright.sync_playwright() as driver:
        chrome = driver.chromium.launch(executable_path=browser, args=["--headless", "--no-sandbox", "--disable-gpu"])
        page = chrome.new_page()
        page.goto((tmp_path / "index.html").as_uri())
        names = "cards => cards.map(c => c.querySelector('h3').textContent)"
        order = page.eval_on_selector_all("article.card", names)
        page.select_option("#sort", "asc")
        ascending = page.eval_on_selector_all("article.card", names)
        chrome.close()
    assert order == ["r0.png", "r1.png", "p1.png", "p2.png", "p0.png", "bad.png"]  # a group per head, high first
    assert ascending == ["r1.png", "r0.png", "p0.png", "p2.png", "p1.png", "bad.png"]  # failures last either way


def test_a_manifest_with_no_row_of_a_run_is_one_line_not_an_empty_page(tmp_path):
    import pytest

    from gradcam_cli.errors import ManifestNotFound
    from gradcam_cli.report import write_report

    (tmp_path / "manifest.jsonl").write_text('{"status": "ok"}\n')
    with pytest.raises(ManifestNotFound, match="no row"):
        write_report(tmp_path)
    assert not (tmp_path / "index.html").exists()
