"""The real app in headless Chromium (Debian's, driven by Playwright) on a tiny demo.

Screenshots go to ``XMR_SCREENSHOT_DIR`` when it is set (to look at them), else to a temp folder.
"""

import json
import os
import re
import shutil
from pathlib import Path

import pytest

from browser.tiny_demo import labels_rows

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
                 "--autoplay-policy=no-user-gesture-required"]
TIMEOUT_MS = 60_000

# The audio player of a result keeps its <audio> element in a shadow root.
AUDIO_STATE_JS = """(sel) => {
  const root = document.querySelector(sel);
  if (!root) return null;
  for (const host of root.querySelectorAll('*')) {
    if (!host.shadowRoot) continue;
    const a = host.shadowRoot.querySelector('audio');
    if (a) return {ready: a.readyState, duration: a.duration, time: a.currentTime, paused: a.paused};
  }
  return null;
}"""


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists() or shutil.which("chromium") is None:
        pytest.skip("Debian's chromium is not installed (make setup-dev installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    folder = os.environ.get("XMR_SCREENSHOT_DIR")
    path = Path(folder) if folder else tmp_path_factory.mktemp("screenshots")
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture
def page(browser, app_server):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    pg = context.new_page()
    pg.set_default_timeout(TIMEOUT_MS)
    pg.goto(app_server.url, wait_until="load")
    pg.wait_for_selector("#search-btn")
    yield pg
    context.close()


@pytest.fixture(scope="module")
def media(demo_media):
    return demo_media


ID_RE = re.compile(r"[a-z]+(?:-[A-Za-z0-9]+)*-b\d{3}")  # the corpus's item ids, e.g. bach-bwv43-11-b000


def run_search(page):
    page.click("#search-btn")
    page.wait_for_selector("#search-status :text('results')")
    page.wait_for_selector("#res-0 img")


def result_ids(page) -> list[str]:
    ids = []
    for i in range(20):
        box = page.locator(f"#res-md-{i}")
        if box.count() == 0 or not box.is_visible():
            break
        ids.append(ID_RE.search(box.inner_text()).group(0))
    return ids


def upload(page, selector: str, path: str, ready: str):
    page.set_input_files(f"{selector} input[type=file]", path)
    page.wait_for_selector(ready)


def test_text_search_shows_images_and_playable_audio(page, shots, media):
    import soundfile as sf

    page.fill("#q-text textarea", "a slow chorale for organ")
    run_search(page)
    ids = result_ids(page)
    assert len(ids) == 8 and len(set(ids)) == 8
    for i in range(2):
        # the score image is loaded and has pixels
        assert page.eval_on_selector(f"#res-img-{i} img", "img => img.complete && img.naturalWidth") > 0
        page.wait_for_selector(f"#res-audio-{i} a[href*='file=']")  # the clip was rendered and served
        page.wait_for_function(f"({AUDIO_STATE_JS})('#res-audio-{i}')?.ready >= 2")
        state = page.evaluate(AUDIO_STATE_JS, f"#res-audio-{i}")
        # decoded by the browser: as long as the item's clip
        assert state["duration"] == pytest.approx(sf.info(media("audio", ids[i])).duration, abs=0.05)
    page.click("#res-audio-0 button[aria-label='Play']")
    page.wait_for_function(f"({AUDIO_STATE_JS})('#res-audio-0')?.time > 0.2")
    assert "similarity" in page.inner_text("#res-md-0")
    page.screenshot(path=str(shots / "search_text.png"), full_page=True)


def test_audio_upload_search(page, media, shots, demo_items):
    upload(page, "#q-audio", media("audio", demo_items[3]), "#q-audio button[aria-label='Play']")
    page.uncheck("#targets label:has-text('image') input")
    run_search(page)
    assert result_ids(page)[0] == demo_items[3]
    assert "audio (1)" in page.inner_text("#search-status")
    page.screenshot(path=str(shots / "search_audio.png"), full_page=True)


def test_image_upload_search(page, media, shots, demo_items):
    upload(page, "#q-image", media("image", demo_items[4]), "#q-image img")
    page.uncheck("#targets label:has-text('audio') input")
    run_search(page)
    assert result_ids(page)[0] == demo_items[4]
    page.screenshot(path=str(shots / "search_image.png"), full_page=True)


def test_fused_query_and_result_as_next_query(page, media, demo_items):
    upload(page, "#q-image", media("image", demo_items[6]), "#q-image img")
    page.fill("#q-text textarea", "a chorale for piano")
    page.fill("#w-text input[type=number]", "0.5")
    page.press("#w-text input[type=number]", "Enter")
    run_search(page)
    assert "image (1) + text (0.5)" in page.inner_text("#search-status")
    # "Use as query" puts the result's audio in the query and runs the search again
    first = result_ids(page)[0]
    page.click("#res-use-0")
    page.wait_for_function("document.querySelector('#search-status').innerText"
                           ".includes('query of audio (1)')")
    # the item's own audio finds the item first, at similarity 1 (the same track vector as indexed)
    page.wait_for_function(f"(() => {{ const t = document.querySelector('#res-md-0').innerText; "
                           f"return t.includes('{first}') && t.includes('matched in audio') && "
                           f"!/\\d\\.\\ds/.test(t); }})()")
    assert re.search(r"similarity (1\.000|0\.99\d)", page.inner_text("#res-md-0"))


def test_explore_plot_shows_the_query_marker(page, shots):
    page.fill("#q-text textarea", "a waltz for piano in D minor")
    run_search(page)
    page.get_by_role("tab", name="Explore").click()
    page.wait_for_selector("#pca-plot .js-plotly-plot .scatterlayer")
    names = page.evaluate("Array.from(document.querySelector('#pca-plot .js-plotly-plot').data, t => t.name)")
    assert names[-1] == "your query" and {"audio", "image", "text"} <= set(names)
    # the star is drawn: the last trace of the SVG scatter layer has one point
    assert page.locator("#pca-plot .scatterlayer .trace").last.locator("path.point").count() == 1
    assert "explained variance" in page.inner_text("#map-info")
    page.screenshot(path=str(shots / "explore.png"), full_page=True)
    # 3-D: the same traces as WebGL scatter3d, drawn on a canvas
    page.click("#map-dims label:has-text('3-D')")
    page.wait_for_function("Array.from(document.querySelector('#pca-plot .js-plotly-plot')?.data || [])"
                           ".some(t => t.type === 'scatter3d' && t.name === 'your query')")
    page.wait_for_selector("#pca-plot .gl-container canvas")


def test_grading_three_results_writes_three_rows(page, tiny_demo_env, shots):
    page.get_by_role("tab", name="Label").click()
    page.fill("#annotator textarea", "dora")
    page.click("#label-next")
    page.wait_for_selector("#label-item-text :text('Result')")

    def current_item():
        return ID_RE.search(page.inner_text("#label-item-text")).group(0)

    # A task is a (query, result) pair, never shown twice to one annotator. While a request runs,
    # Gradio overlays "processing" text on the outputs, so wait for the final values.
    task_js = "['#label-query', '#label-item-text'].map(s => document.querySelector(s).innerText).join('|')"
    graded = []
    for n, how in enumerate(("button-3", "key-1", "button-0"), start=1):
        graded.append(current_item())
        task = page.evaluate(task_js)
        if how.startswith("key"):
            page.locator("body").click(position={"x": 5, "y": 5})  # focus out of the name field
            page.keyboard.press(how[-1])
        else:
            page.click(f"#grade-{how[-1]}")
        page.wait_for_function(
            f"(() => {{ const t = {task_js}; return document.querySelector('#label-progress').innerText"
            f".includes('{n} graded') && !/processing/i.test(t) && t !== {json.dumps(task)}; }})()")
    rows = labels_rows(tiny_demo_env["XMR_LABELS_DB"], "dora")
    assert [g for _, g in rows] == [3, 1, 0]
    assert [i for i, _ in rows] == graded
    assert "3 graded" in page.inner_text("#label-progress")
    page.screenshot(path=str(shots / "label.png"), full_page=True)


def test_evaluate_tab_shows_numbers(page, shots):
    page.get_by_role("tab", name="Evaluate").click()
    page.wait_for_selector("#eval-auto table")
    text = page.inner_text("#eval-auto")
    assert "audio→image" in text and re.search(r"\b0\.\d{3}\b", text)
    page.wait_for_selector("#eval-cdf .js-plotly-plot")
    page.wait_for_selector("#eval-pr .js-plotly-plot")
    page.screenshot(path=str(shots / "evaluate.png"), full_page=True)


def test_empty_query_shows_an_error_and_the_app_keeps_serving(page, app_server):
    page.click("#search-btn")
    page.wait_for_selector(":text('the query is empty')")
    page.fill("#q-text textarea", "a lively reel")
    run_search(page)
    assert app_server.alive() and len(result_ids(page)) == 8


def test_example_queries_run_in_one_click(page, demo_items):
    page.click("#example-audio-0")
    page.wait_for_function("document.querySelector('#search-status').innerText"
                           ".includes('query of audio (1)')")
    page.wait_for_selector("#res-0 img")
    assert result_ids(page)[0] in demo_items
    page.click("#example-text-1")
    page.wait_for_function("document.querySelector('#search-status').innerText.includes('query of text (1)')")
    assert page.input_value("#q-text textarea")  # the example's caption is in the text box
