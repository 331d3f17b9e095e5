"""The live view of report.html: the checkpoint's weights travel in the page and its forward pass runs there.
Known answers in Debian's headless Chromium: the page's attention, logits and detector scores equal PyTorch's
(float16-rounded weights) on English and Hebrew text, for a briefly trained small-preset model and for a
hand-set induction circuit made of weights; typing redraws the view; switching a head off changes the
prediction as PyTorch's ablation does; unknown characters are marked; exports; no network request."""
from __future__ import annotations

import base64
import json
import re

import numpy as np
import pytest
import torch

from charlens import analyze
from charlens.analysis.measures.detectors import detectors_for, target_masks
from charlens.analysis.measures.scoring import score_masks
from charlens.analysis.runs.extract import char_batch
from charlens.analysis.report.html import write_html_report, write_page
from charlens.analysis.report.live_model import live_model
from analyzer_helpers import ENGLISH, make_checkpoint
from chromium import CHROMEDRIVER, CHROMIUM, MISSING, chromium
from charlens.data.charclasses import class_map
from charlens.data.tokenizer import CharTokenizer, normalize
from live_helpers import HEBREW, float16_rounded, handset_model, reference, trained_small_model
from summary_fixture import make_examples, make_summary

EN_TEXT = "In the beginning God created the heaven and the earth. And God said, Let there be light: and there was light."
HE_TEXT = HEBREW[:100]
HAND_EN = "the cat sat on the mat. the dog ran to the barn; the big hen hid."
HAND_HE = "אלהים את השמים ואת הארץ. והארץ היתה"  # longer than the hand-set model's 32: the page reads the last window


def data_block(path) -> dict:
    page = path.read_text(encoding="utf-8")
    return json.loads(re.search(r'<script type="application/json" id="report-data">(.*?)</script>', page, re.S).group(1))


@pytest.fixture(scope="module")
def models() -> dict:
    """Live view id -> (model, tokenizer, language)."""
    tok = CharTokenizer.from_text(ENGLISH + HEBREW)
    hand_tok = CharTokenizer.from_text(HAND_EN + HEBREW[:60])
    return {"lv0": (trained_small_model(tok, (ENGLISH + HEBREW) * 4), tok, "en"),
            "lv1": (handset_model(hand_tok), hand_tok, "he"),
            "lv3": (trained_small_model(tok, (ENGLISH + HEBREW) * 4, attn_only=True), tok, "en")}  # lv2: the capped entry


@pytest.fixture(scope="module")
def page(models, tmp_path_factory):
    entries = [live_model(m, tok, lang, name) for name, (m, tok, lang) in models.items() if name != "lv3"]
    hand, tok, _ = models["lv1"]
    entries.append(live_model(hand, tok, "en", "capped", max_bytes=100_000))
    model, tok, lang = models["lv3"]
    entries.append(live_model(model, tok, lang, "lv3"))
    return write_page({"title": "live", "live": entries}, tmp_path_factory.mktemp("live") / "report.html")


@pytest.fixture(scope="module")
def browser(page):
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.skip(MISSING)
    with chromium(performance_log=True) as driver:
        driver.get(page.as_uri())
        yield driver


def type_text(driver, view: str, text: str, block_size: int) -> None:
    """Put `text` in the view's box as a paste would, and wait for the page to have run the model on it."""
    driver.execute_script("const box = document.getElementById(arguments[0] + '-input'); box.value = arguments[1];"
                          "box.dispatchEvent(new Event('input'));", view, text)
    wait_for(driver, view, normalize(text)[-block_size:])


def wait_for(driver, view: str, shown: str) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, 10).until(lambda d: d.execute_script(
        "const v = charlensLive.views[arguments[0]]; return v && v.text === arguments[1];", view, shown))


def page_result(driver, view: str, L: int, H: int) -> dict:
    r = driver.execute_script("const v = charlensLive.views[arguments[0]];"
                              "return {ids: v.ids, attention: Array.from(v.attention), logits: Array.from(v.logits), scores: v.scores};", view)
    T = len(r["ids"])
    return {"ids": np.array(r["ids"]), "attention": np.array(r["attention"]).reshape(L, H, T, T),
            "logits": np.array(r["logits"]), "scores": r["scores"]}  # logits after the last character


def set_off(driver, view: str, heads: set) -> None:
    """Tick exactly the given heads' switch-off boxes."""
    for box in driver.find_elements("css selector", f"#{view}-ablation input"):
        l, h = map(int, box.get_attribute("id").split("-")[-2:])
        if box.is_selected() != ((l, h) in heads):
            box.click()


def test_entry_holds_float16_weights_vocabulary_and_classes(models):
    model, tok, lang = models["lv1"]
    entry = live_model(model, tok, lang, "hand")
    blob = np.frombuffer(base64.b64decode(entry["weights"]), dtype="<f2")
    state = model.state_dict()
    assert "lm_head.weight" not in [t["name"] for t in entry["tensors"]]  # tied: sent once, as the token embedding
    for t in entry["tensors"]:
        got = blob[t["offset"]:t["offset"] + int(np.prod(t["shape"]))].reshape(t["shape"])
        np.testing.assert_array_equal(got, state[t["name"]].half().numpy())
    assert blob.size == sum(v.numel() for k, v in state.items() if k != "lm_head.weight") == entry["weight_bytes"] // 2
    assert entry["chars"] == tok.chars and entry["unknown_id"] == 0
    assert entry["class_table"] == class_map("he") and list(entry["detectors"]) == detectors_for("he")
    assert entry["feature_table"]["ם"] == 2 and entry["feature_table"]["ו"] == 1


def test_a_model_above_the_cap_is_left_out_with_the_reason(models, browser):
    model, tok, _ = models["lv1"]
    n = sum(v.numel() for k, v in model.state_dict().items() if k != "lm_head.weight")
    entry = live_model(model, tok, "en", max_bytes=2 * n - 1)
    assert "weights" not in entry and f"{n:,} weights" in entry["omitted"] and "cap of" in entry["omitted"]
    assert live_model(model, tok, "en", max_bytes=2 * n)["weight_bytes"] == 2 * n
    note = browser.find_element("id", "lv2-omitted").text
    assert note.startswith("The live model was left out of this page:") and "above the page's cap" in note


@pytest.mark.parametrize("view, text", [("lv0", EN_TEXT), ("lv0", HE_TEXT), ("lv1", HAND_EN), ("lv1", HAND_HE),
                                        ("lv3", EN_TEXT)])  # lv3: attention-only
def test_page_forward_equals_pytorch(browser, models, view, text):
    model, tok, _ = models[view]
    cfg = model.config
    set_off(browser, view, set())
    type_text(browser, view, text, cfg.block_size)
    got = page_result(browser, view, cfg.n_layer, cfg.n_head)
    ids = tok.encode(text, unknown="replace")[-cfg.block_size:]
    np.testing.assert_array_equal(got["ids"], ids)
    att, logits = reference(float16_rounded(model), ids)
    np.testing.assert_allclose(got["attention"], att, atol=1e-3, rtol=0)
    np.testing.assert_allclose(got["logits"], logits[-1], atol=1e-3, rtol=0)
    assert np.abs(logits[-1]).max() > 1.0 and att.std() > 0.01  # non-trivial numbers, not a pass by smallness


@pytest.mark.parametrize("view, text", [("lv0", EN_TEXT), ("lv1", HAND_HE), ("lv1", HAND_EN + " the ca")])
def test_page_detector_scores_equal_score_masks(browser, models, view, text):
    model, tok, lang = models[view]
    cfg = model.config
    set_off(browser, view, set())
    type_text(browser, view, text, cfg.block_size)
    got = page_result(browser, view, cfg.n_layer, cfg.n_head)["scores"]
    window = normalize(text)[-cfg.block_size:]
    ids = tok.encode(window, unknown="replace")
    att, _ = reference(float16_rounded(model), ids)
    batch = char_batch(tok, [window], lang)
    names = detectors_for(lang)
    want = score_masks(torch.from_numpy(att)[None], target_masks(batch, names))
    assert set(got) == set(names)  # every detector of the analysis is computed in the page
    for d, name in enumerate(names):
        page_scores = np.array([np.nan if v is None else v for v in got[name]["score"]], dtype=float)
        np.testing.assert_allclose(page_scores, want.score[0, d].flatten().numpy(), atol=1e-3, rtol=0, err_msg=name)
        assert got[name]["baseline"] is None and want.baseline[0, d].isnan() or \
            abs(got[name]["baseline"] - float(want.baseline[0, d])) < 1e-6, name
    if view == "lv1":  # the hand-set heads score as made: L0H0 previous character, L1H0 induction (lv1: 2 heads)
        assert got["previous_char"]["score"][0] > 0.99
    if text.endswith(" the ca"):
        assert got["prefix_match_1"]["score"][2] > 0.9  # the hand-set circuit copies after one matching character


def test_typing_redraws_the_view_and_a_previous_character_head_shows_its_diagonal(browser):
    from selenium.webdriver.common.by import By

    set_off(browser, "lv1", set())
    type_text(browser, "lv1", "ab", 32)
    matrix = lambda: browser.execute_script("return document.getElementById('lv1-matrix').toDataURL()")
    before = matrix()
    box = browser.find_element(By.ID, "lv1-input")
    box.send_keys(" the cat sat")  # typed key by key, with the debounce in between
    wait_for(browser, "lv1", "ab the cat sat")
    assert matrix() != before
    assert browser.find_element(By.ID, "lv1-name").text.startswith("L0H0")
    spans = browser.find_elements(By.CSS_SELECTOR, "#lv1-to .ch")
    assert "".join(s.text for s in spans) == "ab\u2423the\u2423cat\u2423sat"
    w = [float(s.get_attribute("data-w")) for s in spans]  # the last character is in focus
    assert int(np.argmax(w)) == len(spans) - 2 and w[-2] > 0.99
    att = page_result(browser, "lv1", 2, 2)["attention"]
    assert np.diagonal(att[0, 0], -1).min() > 0.99  # the whole diagonal below the main one


def test_switching_a_head_off_changes_the_prediction_as_pytorch_does(browser, models):
    model, tok, _ = models["lv1"]
    text = "a big dog ran. a big d"  # L1H0 finds the earlier 'd' and predicts what followed it: 'o'
    ref = float16_rounded(model)
    top = lambda: int(browser.find_element("css selector", "#lv1-predictions .pred").get_attribute("data-id"))
    set_off(browser, "lv1", set())
    type_text(browser, "lv1", text, 32)
    ids = tok.encode(text)
    assert tok.decode([top()]) == "o" == tok.decode([reference(ref, ids)[1][-1].argmax()])
    set_off(browser, "lv1", {(0, 0)})
    att, logits = reference(ref, ids, off=[(0, 0)])
    got = page_result(browser, "lv1", 2, 2)
    assert top() == int(logits[-1].argmax()) != tok.stoi["o"]
    np.testing.assert_allclose(got["logits"], logits[-1], atol=1e-3, rtol=0)
    np.testing.assert_allclose(got["attention"], att, atol=1e-3, rtol=0)
    assert np.abs(got["attention"][1, 0] - reference(ref, ids)[0][1, 0]).max() > 0.5  # downstream, L1H0 lost its target
    assert "ablated" in browser.find_element("css selector", "#lv1-thumbs canvas[data-layer='0'][data-head='0']").get_attribute("class")
    set_off(browser, "lv1", set())
    assert tok.decode([top()]) == "o"


def test_unknown_characters_are_marked_and_an_empty_box_shows_a_hint(browser):
    from selenium.webdriver.common.by import By

    set_off(browser, "lv1", set())
    type_text(browser, "lv1", "the cat \u20ac sat", 32)
    spans = browser.find_elements(By.CSS_SELECTOR, "#lv1-to .ch")
    assert [i for i, s in enumerate(spans) if "unk" in s.get_attribute("class")] == [8]
    assert spans[8].text == "\u20ac" and page_result(browser, "lv1", 2, 2)["ids"][8] == 0
    assert "U+20AC" in browser.find_element(By.ID, "lv1-notice").text
    type_text(browser, "lv1", "", 32)
    assert "Type or paste" in browser.find_element(By.ID, "lv1-notice").text
    assert not browser.find_element(By.ID, "lv1-view").is_displayed()
    type_text(browser, "lv1", HAND_EN + HAND_EN, 32)
    assert f"Only the last 32 of {2 * len(HAND_EN)} characters" in browser.find_element(By.ID, "lv1-notice").text
    assert [e for e in browser.get_log("browser") if e["level"] == "SEVERE"] == []


def test_hebrew_typed_text_runs_right_to_left(browser):
    from selenium.webdriver.common.by import By

    type_text(browser, "lv1", HAND_HE, 32)
    panel = browser.find_element(By.ID, "lv1-to")
    assert panel.get_attribute("dir") == "rtl"
    spans = panel.find_elements(By.CSS_SELECTOR, ".ch")
    assert spans[0].text == HAND_HE[-32] and spans[0].location["x"] > spans[1].location["x"]
    type_text(browser, "lv1", "the cat", 32)
    assert browser.find_element(By.ID, "lv1-to").get_attribute("dir") == "ltr"


def test_export_gives_a_png_and_an_svg_with_one_cell_per_weight(browser):
    text = "the cat sat"
    type_text(browser, "lv1", text, 32)
    n = len(text)
    hrefs = browser.execute_script("""
        const out = {};
        for (const a of document.querySelectorAll('#lv1-export a')) {
          a.addEventListener('click', function (e) { e.preventDefault(); }, { once: true });  // no download here
          a.click();
          out[a.id] = a.href;
        }
        return out;""")
    svg = lambda key: __import__("urllib.parse", fromlist=["unquote"]).unquote(hrefs[key].split(",", 1)[1])
    assert svg("lv1-export-matrix-svg").count('class="cell"') == n * (n + 1) // 2  # the causal triangle
    assert svg("lv1-export-view-svg").count('class="cell"') == 2 * n  # the text twice: attends to, attended by
    assert svg("lv1-export-view-svg").startswith("<svg xmlns=")
    for key in ("lv1-export-matrix-png", "lv1-export-view-png"):
        head, data = hrefs[key].split(",", 1)
        png = base64.b64decode(data)
        assert head == "data:image/png;base64" and png[:8] == b"\x89PNG\r\n\x1a\n"
        assert int.from_bytes(png[16:20], "big") > 2 * n  # IHDR width: the picture, drawn at twice its size


def test_the_page_makes_no_network_request(browser, page):
    browser.get_log("performance")  # drop what came before
    browser.get(page.as_uri())
    type_text(browser, "lv0", EN_TEXT, 128)
    set_off(browser, "lv0", {(1, 2)})
    set_off(browser, "lv0", set())
    urls = [m["params"]["request"]["url"] for m in (json.loads(e["message"])["message"] for e in browser.get_log("performance"))
            if m["method"] == "Network.requestWillBeSent"]
    assert page.as_uri() in urls
    assert [u for u in urls if u != page.as_uri() and not u.startswith("data:")] == []


def test_analyze_embeds_the_live_model_unless_told_not_to(tmp_path):
    ckpt, _ = make_checkpoint(tmp_path, seed=1)
    quick = ["--windows", "12", "--n-boot", "50", "--min-windows", "4", "--induction-windows", "4", "--quiet"]
    assert analyze.main(["--ckpt", str(ckpt), "--out", str(tmp_path / "one"), *quick]) == 0
    live = data_block(tmp_path / "one" / "report.html")["live"]
    assert [e["name"] for e in live] == ["model1"] and live[0]["config"]["n_layer"] == 2
    assert len(live[0]["initial_text"]) == 32 and live[0]["head_names"] == ["none"] * 4  # a random model: no behaviour
    no_live = analyze.build_parser().parse_args(["--ckpt", str(ckpt), "--no-live-model"])
    assert analyze.live_entry(no_live, inputs=None) is None


def test_write_html_report_places_the_entry(models, tmp_path):
    model, tok, lang = models["lv1"]
    summary = make_summary(n_layer=2, n_head=2)
    path = write_html_report(summary, make_examples(["the cat sat on the mat"]), [], tmp_path / "report.html",
                             live=live_model(model, tok, lang, "hand"))
    [entry] = data_block(path)["live"]
    assert entry["name"] == "hand" and entry["initial_text"] == "the cat sat on the mat"  # the view opens on it
    assert entry["head_names"][0] == "previous_char"  # the report's verdicts name the live view's heads
    assert data_block(write_html_report(summary, None, [], tmp_path / "none.html"))["live"] == []
