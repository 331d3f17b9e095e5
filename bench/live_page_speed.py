"""Speed of report.html's live view in headless Chromium (timings by performance.now() inside the page).

    python bench/live_page_speed.py [--ckpt checkpoints/en.pt] [--rounds 40]

Each round pastes a different 128-character window of held-out English Bible text into the box and reads the
page's own timing of the update it runs: forward pass, detector scores, redraw (head view, thumbnails, matrix,
predictions, score table). Separately, from the input event to the next animation frame, which adds the
40 ms typing debounce and the browser's layout. Target: an update for 128 characters within 100 ms.
On a shared machine the times grow with the load: the minimum is the least disturbed update, and the load
average is printed at the start and the end.
Without --ckpt a freshly initialized `small`-preset model over the English Bible's vocabulary (same cost).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from charlens.analysis.report.html import write_page  # noqa: E402
from charlens.analysis.report.live_model import live_model  # noqa: E402
from analyze_speed import model_and_text  # noqa: E402
from chromium import chromium  # noqa: E402

PASTE_TO_FRAME = """
const done = arguments[arguments.length - 1], box = document.getElementById('lv0-input');
const before = charlensLive.views.lv0, t0 = performance.now();
box.value = arguments[0];
box.dispatchEvent(new Event('input'));
(function poll() {
  if (charlensLive.views.lv0 !== before) requestAnimationFrame(function () { done(performance.now() - t0); });
  else setTimeout(poll, 1);
})();"""


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ckpt", help="checkpoint (default: a fresh small-preset model)")
    p.add_argument("--rounds", type=int, default=40)
    args = p.parse_args()
    model, tok, corpus = model_and_text(args.ckpt)
    T = model.config.block_size
    texts = [corpus.heldout[k * T:(k + 1) * T] for k in range(args.rounds + 1)]
    page = write_page({"title": "live speed", "live": [{**live_model(model, tok, "en", "bench"), "initial_text": texts[0]}]},
                      Path(tempfile.mkdtemp(prefix="charlens-live-")) / "report.html")
    print(f"page {page.stat().st_size / 1e6:.2f} MB; model {sum(p.numel() for p in model.parameters()) / 1e6:.2f} M parameters, "
          f"{T} characters per update; load average at start {os.getloadavg()[0]:.2f}")
    parts: dict[str, list[float]] = {"forward": [], "detectors": [], "draw": [], "total": [], "input to frame": []}
    with chromium() as driver:
        driver.get(page.as_uri())
        for text in texts[1:]:
            parts["input to frame"].append(driver.execute_async_script(PASTE_TO_FRAME, text))
            ms = driver.execute_script("return charlensLive.views.lv0.ms")
            for k in ms:
                parts[k].append(ms[k])
    print(f"{'ms per update':<16} {'min':>7} {'median':>7} {'max':>7}")
    for k, v in parts.items():
        print(f"{k:<16} {min(v):7.1f} {statistics.median(v):7.1f} {max(v):7.1f}")
    print(f"load average at end {os.getloadavg()[0]:.2f}; {args.rounds} rounds")


if __name__ == "__main__":
    main()
