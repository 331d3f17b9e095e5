"""report.html's training-step slider: with `--snapshots`, analyze.py embeds the first example window's
attention at every snapshot step (and the final one), equal to what each snapshot's model gives; without
snapshots there is no slider; in Chromium, moving the slider redraws the head view without console errors."""
import base64
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from charlens import analyze
from charlens import train
from charlens.analysis.runs.extract import iter_attention
from charlens.analysis.runs.snapshots import snapshot_files, spread
from chromium import CHROMEDRIVER, CHROMIUM, MISSING, chromium
from charlens.data.tokenizer import tokenizer_from_dict
from charlens.model.checkpoint import load_checkpoint, model_from_checkpoint

torch.set_num_threads(1)
QUICK = ["--windows", "16", "--n-boot", "50", "--induction-windows", "4", "--quiet", "--no-live-model"]


def data_block(page: str) -> dict:
    m = re.search(r'<script type="application/json" id="report-data">(.*?)</script>', page, re.S)
    return json.loads(m.group(1))


@pytest.fixture(scope="module")
def run(text_file, tmp_path_factory) -> dict:
    """A tiny model trained 20 steps with snapshots at 3, 7 and 20, analysed; and a copy without its snapshots."""
    folder = tmp_path_factory.mktemp("slider")
    ckpt = folder / "m.pt"
    assert train.main(["--text", str(text_file), "--preset", "tiny", "--out", str(ckpt), "--sample-chars", "0",
                       "--max-iters", "20", "--eval-interval", "10", "--snapshots", "3"]) == 0
    assert analyze.main(["--ckpt", str(ckpt), "--out", str(folder / "rep"), *QUICK]) == 0
    alone = folder / "alone"
    alone.mkdir()
    (alone / "m.pt").write_bytes(ckpt.read_bytes())
    assert analyze.main(["--ckpt", str(alone / "m.pt"), "--out", str(folder / "rep_alone"), *QUICK]) == 0
    return {"ckpt": ckpt, "page": folder / "rep" / "report.html", "alone": folder / "rep_alone"}


def test_page_holds_each_snapshots_attention_on_the_first_window(run):
    view = data_block(run["page"].read_text(encoding="utf-8"))["views"][0]
    ts = view["training_steps"]
    assert ts["steps"] == [3, 7, 20]  # the snapshots before the final step, then the final step
    L, H, n = view["n_layer"], view["n_head"], len(ts["text"])
    assert view["texts"][0]["text"].startswith(ts["text"])
    for step, b64 in zip(ts["steps"], ts["attention"]):
        state = load_checkpoint(run["ckpt"].with_name(f"m.step{step}.pt"))
        batch = next(iter_attention(model_from_checkpoint(state), tokenizer_from_dict(state["tokenizer"]),
                                    [ts["text"]], view["lang"] or "en"))
        want = np.rint(batch.attention[0].numpy().astype(np.float16).astype(np.float32) * 255)
        got = np.frombuffer(base64.b64decode(b64), np.uint8).reshape(L, H, n, n).astype(np.float32)
        assert np.abs(got - want).max() <= 1  # float16 weights, stored as uint8 (weight x 255)
    first, last = (np.frombuffer(base64.b64decode(b), np.uint8) for b in (ts["attention"][0], ts["attention"][-1]))
    assert not np.array_equal(first, last)  # training changed the attention


def test_without_snapshots_there_is_no_slider_and_the_summary_is_unchanged(run):
    alone = data_block((run["alone"] / "report.html").read_text(encoding="utf-8"))
    assert "training_steps" not in alone["views"][0]
    summary = json.loads((run["page"].parent / "summary.json").read_text(encoding="utf-8"))
    assert "training_steps" not in json.dumps(summary) and "snapshot" not in json.dumps(summary)


def test_snapshot_files_and_cap(tmp_path):
    for name in ("m.step3.pt", "m.step12.pt", "m_s0.step5.pt", "m.step.pt", "m.pt"):
        (tmp_path / name).write_bytes(b"")
    assert [(k, p.name) for k, p in snapshot_files(tmp_path / "m.pt")] == [(3, "m.step3.pt"), (12, "m.step12.pt")]
    assert spread(list(range(20)), 8)[0] == 0 and spread(list(range(20)), 8)[-1] == 19
    assert len(spread(list(range(20)), 8)) == 8 and spread([1, 2], 8) == [1, 2]


def test_slider_redraws_the_head_view_in_chromium(run):
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.skip(MISSING)
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    view = data_block(run["page"].read_text(encoding="utf-8"))["views"][0]
    ts, L, H = view["training_steps"], view["n_layer"], view["n_head"]
    n = len(ts["text"])
    a = [np.frombuffer(base64.b64decode(ts["attention"][k]), np.uint8).reshape(L, H, n, n).astype(int) for k in (0, -1)]
    l, h, i = np.unravel_index(np.abs(a[0] - a[1]).sum(-1).argmax(), (L, H, n))  # where the two steps differ most
    with chromium() as driver:
        driver.get(run["page"].as_uri())
        assert [e for e in driver.get_log("browser") if e["level"] == "SEVERE"] == []
        slider = driver.find_element(By.ID, "hv0-step")
        assert slider.get_attribute("value") == "2"
        assert driver.find_element(By.ID, "hv0-step-value").text == "step 20 (final)"
        Select(driver.find_element(By.ID, "hv0-layer")).select_by_value(str(l))
        Select(driver.find_element(By.ID, "hv0-head")).select_by_value(str(h))
        span = driver.find_elements(By.CSS_SELECTOR, "#hv0-to .ch")[i]
        driver.execute_script("arguments[0].scrollIntoView()", span)
        span.click()  # pin the query character
        shading = "return Array.from(document.querySelectorAll('#hv0-to .ch')).map(s => s.dataset.w).join()"
        matrix = "return document.getElementById('hv0-matrix').toDataURL()"
        final = driver.execute_script(shading), driver.execute_script(matrix)
        driver.execute_script("arguments[0].value = 0; arguments[0].dispatchEvent(new Event('input'))", slider)
        assert driver.find_element(By.ID, "hv0-step-value").text == "step 3"
        first = driver.execute_script(shading), driver.execute_script(matrix)
        assert first[0] != final[0] and first[1] != final[1]
        assert driver.get_log("browser") == []


def test_a_snapshot_of_another_model_is_left_out_with_a_note(run, tmp_path, capsys):
    """A <stem>.step<k>.pt of another architecture beside the checkpoint: no slider, and one note naming it."""
    import shutil

    from analyzer_helpers import make_checkpoint

    folder = tmp_path / "m"
    folder.mkdir()
    shutil.copy(run["ckpt"], folder / "m.pt")
    other, _ = make_checkpoint(tmp_path, n_embd=16)
    shutil.copy(other, folder / "m.step5.pt")
    assert analyze.main(["--ckpt", str(folder / "m.pt"), "--out", str(tmp_path / "r"), *QUICK]) == 0
    err = capsys.readouterr().err
    assert err.count("note: snapshot left out of the step slider: m.step5.pt: another model config or tokenizer") == 1
    page = data_block((tmp_path / "r" / "report.html").read_text(encoding="utf-8"))
    assert "training_steps" not in page["views"][0]
