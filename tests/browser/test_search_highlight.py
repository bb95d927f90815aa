"""The real app in headless Chromium: an uploaded audio clip highlights the matching bars on the
result scores, each score drawn at the card's full width and enlarged by a click.

Screenshots go to ``XMR_SCREENSHOT_DIR`` when it is set (to look at them), else to a temp folder.
"""

import re

import pytest

from browser import test_browser as tb
from browser.test_browser import result_ids, run_search, upload

# the page and the screenshots folder of the other browser tests
browser, page, shots, media = tb.browser, tb.page, tb.shots, tb.media

pytestmark = pytest.mark.browser

BARS_RE = re.compile(r"best-matching (bars? (\d+)(?:–(\d+))?) of (\d+)")

# Columns of the shown score whose pixels carry the highlight's tint (red well above blue), as
# [first, last] in the image's own pixels; null without any.
TINT_COLUMNS_JS = """(sel) => {
  const img = document.querySelector(sel);
  if (!img || !img.complete || !img.naturalWidth) return null;
  const c = document.createElement('canvas');
  c.width = img.naturalWidth; c.height = img.naturalHeight;
  const g = c.getContext('2d');
  g.drawImage(img, 0, 0);
  const d = g.getImageData(0, 0, c.width, c.height).data;
  let lo = -1, hi = -1;
  for (let x = 0; x < c.width; x++) {
    for (let y = 0; y < c.height; y++) {
      const i = 4 * (y * c.width + x);
      if (d[i] > d[i + 2] + 40) { if (lo < 0) lo = x; hi = x; break; }
    }
  }
  return lo < 0 ? null : [lo, hi];
}"""


@pytest.fixture(scope="module")
def clip(tmp_path_factory, demo_items, demo_media):
    """Four seconds (1.0-5.0 s) of a test item's audio, and that item."""
    import soundfile as sf

    item = demo_items[5]
    wave, sr = sf.read(demo_media("audio", item), dtype="float32")
    path = tmp_path_factory.mktemp("clip") / "clip.wav"
    sf.write(path, wave[int(1.0 * sr):int(5.0 * sr)], sr)
    return str(path), item


def test_audio_clip_highlights_the_matching_bars_on_each_score(page, shots, clip, tiny_demo_env):
    from xmr.data.manifest import bar_alignment, read_manifest

    rows = read_manifest(tiny_demo_env["XMR_MANIFEST"]).set_index("id", drop=False)
    path, item = clip
    upload(page, "#q-audio", path, "#q-audio button[aria-label='Play']")
    run_search(page)
    ids = result_ids(page)
    assert len(ids) == 8 and item in ids
    page.wait_for_selector("#res-md-0 :text('best-matching')")
    checked = 0
    for i, item_id in enumerate(ids):
        text = page.inner_text(f"#res-md-{i}")
        m = BARS_RE.search(text)
        assert m, text
        first = int(m.group(2)) - 1
        last = int(m.group(3) or m.group(2)) - 1
        bars = bar_alignment(rows.loc[item_id])
        assert int(m.group(4)) == len(bars["bar_onsets"]) and 0 <= first <= last < len(bars["bar_onsets"])
        # the picture shown is the highlighted one, tinted over exactly the matched bars' columns
        page.wait_for_function(f"document.querySelector('#res-img-{i} img')?.src.includes('-bars')")
        cols = page.evaluate(TINT_COLUMNS_JS, f"#res-img-{i} img")
        assert cols is not None
        assert abs(cols[0] - (int(bars["bar_x0"][first]) - 1)) <= 2, (cols, bars["bar_x0"], first)
        assert abs(cols[1] - (int(bars["bar_x1"][last]) + 1)) <= 2, (cols, bars["bar_x1"], last)
        checked += 1
    assert checked == 8
    # each score fills its card's width
    for i in range(2):
        img = page.locator(f"#res-img-{i} img").bounding_box()
        card = page.locator(f"#res-{i}").first.bounding_box()
        assert img["width"] >= 0.9 * card["width"] - 16, (img, card)
    page.screenshot(path=str(shots / "highlight_results.png"), full_page=True)
    page.locator("#res-0").first.screenshot(path=str(shots / "highlight_card.png"))


def test_a_click_on_a_score_enlarges_it(page, shots, clip):
    path, _ = clip
    upload(page, "#q-audio", path, "#q-audio button[aria-label='Play']")
    run_search(page)
    page.wait_for_function("document.querySelector('#res-img-0 img')?.src.includes('-bars')")
    before = page.locator("#res-img-0 img").bounding_box()
    page.click("#res-img-0 img")
    page.wait_for_function("""(w) => [...document.querySelectorAll('#res-img-0 img')]
        .some((i) => i.getBoundingClientRect().width > w * 1.5)""", arg=before["width"])
    page.screenshot(path=str(shots / "highlight_enlarged.png"))
    widths = page.eval_on_selector_all("#res-img-0 img",
                                       "els => els.map((e) => e.getBoundingClientRect().width)")
    assert max(widths) > 1.5 * before["width"]


def test_a_text_query_highlights_nothing(page):
    page.fill("#q-text textarea", "a slow chorale for organ")
    run_search(page)
    page.wait_for_function("document.querySelector('#res-img-0 img')?.src.includes('/file=')")
    assert "best-matching" not in page.inner_text("#res-md-0")
    src = page.eval_on_selector("#res-img-0 img", "img => img.src")
    assert "-bars" not in src
