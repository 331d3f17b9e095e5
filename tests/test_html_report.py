"""report.html: self-contained (no network), data block valid, and — in Debian's
headless Chromium — no console errors, a head view that follows head/layer changes
and hovering, right-to-left Hebrew, a sortable table with unknown keys, a screenshot
that is not blank."""
import io
import json
import re

import numpy as np
import pytest

from charlens.analysis.report.figures.base import FigureWriter
from charlens.analysis.report.figures.sets import analysis_figures
from charlens.analysis.report.html import MAX_VIEW_BYTES, head_view, render, view_chars, write_html_report
from summary_fixture import make_examples, make_summary

EN_TEXTS = ["the cat sat on the mat. a dog r", "in the beginning god created th"]
HE_TEXT = "בראשית ברא אלהים את השמים ואת ה"


def data_block(page: str) -> dict:
    m = re.search(r'<script type="application/json" id="report-data">(.*?)</script>', page, re.S)
    return json.loads(m.group(1))


@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    s = make_summary(extra_head_keys=True)
    ex = make_examples(EN_TEXTS)
    figs = analysis_figures(s, ex, FigureWriter(out))
    en = write_html_report(s, ex, figs, out / "report.html",
                           extra_sections=[{"title": "Ablation", "html": "<p id='extra-html'>head ablation</p>",
                                            "figures": [{"file": "heatmap.png", "title": "again"}]}])
    he_dir = out / "he"
    he_dir.mkdir()
    he = write_html_report(make_summary("he", "he"), make_examples([HE_TEXT], "he"), [], he_dir / "report.html")
    return en, he


def test_page_is_self_contained_and_its_data_round_trips(reports):
    en, _ = reports
    page = en.read_text(encoding="utf-8")
    assert not re.search(r'(src|href)="(https?:)?//', page)  # nothing fetched from the network
    data = data_block(page)
    assert data["tables"][0]["rows"][0]["ablation_delta_loss"] == 0.0
    assert all(f["src"].startswith("data:image/png;base64,") for f in data["figures"])
    view = data["views"][0]
    assert [t["text"] for t in view["texts"]] == EN_TEXTS
    att = np.frombuffer(__import__("base64").b64decode(view["texts"][0]["attention"]), np.uint8).reshape(2, 3, 31, 31)
    assert att[0, 0, 5, 4] == 255 and att[0, 0, 5].sum() == 255  # L0H0 is the previous-character head


def test_script_breaking_text_and_nan_are_escaped():
    page = render({"title": "a <b> & c", "findings": ["</script><script>alert(1)</script>", float("nan")]})
    data = data_block(page)
    assert data["findings"] == ["</script><script>alert(1)</script>", None]
    assert "<title>a &lt;b&gt; &amp; c</title>" in page


def test_long_texts_are_cut_to_the_byte_budget():
    assert view_chars(4, 8, 7, 512) ** 2 * 4 * 8 * 7 <= MAX_VIEW_BYTES
    ex = make_examples(["ab cd efg." * 13] * 6)  # 130 characters each
    view = head_view(ex, budget=2 * 6 * 40 * 40)
    assert len(view["texts"]) == 4  # at most MAX_VIEW_TEXTS
    assert len(view["texts"][0]["text"]) == view_chars(4, 2, 3, 130, 2 * 6 * 40 * 40) < 130
    assert view["texts"][0]["cropped_from"] == 130


def weights(driver, panel: str) -> list[float]:
    return [float(w) for w in driver.execute_script(
        "return Array.from(document.querySelectorAll(arguments[0] + ' .ch')).map(s => s.dataset.w)", panel)]


def test_head_view_in_chromium(browser, reports):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    en, _ = reports
    browser.get(en.as_uri())
    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert errors == []
    assert browser.find_element(By.ID, "extra-html").text == "head ablation"

    # The view opens on the first validated head, L0H0 (previous character).
    spans = browser.find_elements(By.CSS_SELECTOR, "#hv0-to .ch")
    assert len(spans) == len(EN_TEXTS[0])
    browser.execute_script("arguments[0].scrollIntoView()", spans[12])
    ActionChains(browser).move_to_element(spans[12]).perform()
    w = weights(browser, "#hv0-to")
    assert int(np.argmax(w)) == 11 and w[11] == 1.0  # attends to the character before
    assert spans[11].value_of_css_property("background-color") != spans[5].value_of_css_property("background-color")
    assert int(np.argmax(weights(browser, "#hv0-from"))) == 13  # and the next one attends to it
    matrix_before = browser.execute_script("return document.getElementById('hv0-matrix').toDataURL()")

    ActionChains(browser).move_to_element(spans[20]).perform()  # hover moves the highlight
    assert int(np.argmax(weights(browser, "#hv0-to"))) == 19

    Select(browser.find_element(By.ID, "hv0-head")).select_by_value("2")  # L0H2: offset 3
    assert browser.find_element(By.ID, "hv0-name").text.startswith("L0H2")
    assert int(np.argmax(weights(browser, "#hv0-to"))) == 17
    Select(browser.find_element(By.ID, "hv0-layer")).select_by_value("1")  # L1H2: uniform
    np.testing.assert_allclose(weights(browser, "#hv0-to")[:21], 1 / 21, atol=0.003)
    assert browser.execute_script("return document.getElementById('hv0-matrix').toDataURL()") != matrix_before

    Select(browser.find_element(By.ID, "hv0-text")).select_by_value("1")  # another text
    assert browser.find_element(By.CSS_SELECTOR, "#hv0-to .ch").text == "i"
    assert browser.get_log("browser") == []

    png = browser.get_screenshot_as_png()
    from matplotlib.image import imread
    pixels = imread(io.BytesIO(png))[..., :3]
    assert pixels.std() > 0.05 and (pixels.mean(-1) < 0.5).mean() > 0.001  # drawn, not a blank page


def test_summary_table_sorts_and_shows_unknown_keys(browser, reports):
    from selenium.webdriver.common.by import By

    en, _ = reports
    browser.get(en.as_uri())
    header = browser.find_element(By.CSS_SELECTOR, "#table-0 th[data-key='ablation_delta_loss']")
    column = lambda: [td.text for td in browser.find_elements(By.CSS_SELECTOR, "#table-0 tbody tr td:nth-child(%d)"
                      % (1 + [th.text for th in browser.find_elements(By.CSS_SELECTOR, "#table-0 th")].index(
                          "ablation_delta_loss")))]
    header.click()
    ascending = [float(x) for x in column()]
    assert ascending == sorted(ascending)
    header.click()
    assert [float(x) for x in column()] == sorted(ascending, reverse=True)
    assert "desc" in header.get_attribute("class")


def test_hebrew_head_view_reads_right_to_left(browser, reports):
    from selenium.webdriver.common.by import By

    _, he = reports
    browser.get(he.as_uri())
    assert [e for e in browser.get_log("browser") if e["level"] == "SEVERE"] == []
    panel = browser.find_element(By.ID, "hv0-to")
    assert panel.get_attribute("dir") == "rtl"
    spans = panel.find_elements(By.CSS_SELECTOR, ".ch")
    assert spans[0].text == HE_TEXT[0]
    assert spans[0].location["x"] > spans[1].location["x"]  # the first letter is drawn rightmost


def test_padded_short_texts_keep_their_own_length():
    ex = make_examples(EN_TEXTS)
    ex["text"] = np.array([EN_TEXTS[0], EN_TEXTS[1][:12]])  # a --sentences window shorter than the others
    view = head_view(ex)
    short = view["texts"][1]
    assert short["text"] == EN_TEXTS[1][:12] and short["cropped_from"] is None
    att = np.frombuffer(__import__("base64").b64decode(short["attention"]), np.uint8).reshape(2, 3, 12, 12)
    assert att[0, 0, 11, 10] == 255  # still the previous-character head, laid out 12 x 12
