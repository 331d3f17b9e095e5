"""Screenshots of report pages for the docs (docs/figures), taken in Debian's headless Chromium (tests/chromium.py),
so that a picture in the docs is made by a command written beside it:

    python tests/screenshots.py reports/en/report.html docs/figures/report_top.png --max-height 1500
    python tests/screenshots.py reports/en/report.html docs/figures/live_page.png --section live-0 \
        --type "And God said, Let there be light: and there was light." --max-height 1300 \
        --click "#lv0-thumbs canvas[data-layer='1'][data-head='2']" --click "#lv0-to .ch[data-i='40']"

--section crops to one section of the page (its id: findings, overview, live-0, ...; the page's table of contents
links to them); --type puts a text into that live view's box and waits until the page has run the model on it;
--click clicks the page's elements (CSS selectors) in order: a head's thumbnail, a character to pin it."""
from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from chromium import CHROMEDRIVER, CHROMIUM, MISSING, chromium  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("page", type=Path, help="a report.html")
    p.add_argument("out", type=Path, help="the PNG to write")
    p.add_argument("--section", help="the id of the section to show (default: the top of the page)")
    p.add_argument("--type", dest="text", help="text for the section's live view (--section live-K)")
    p.add_argument("--click", action="append", default=[], metavar="SELECTOR",
                   help="click this element (a CSS selector) before the picture; repeatable, in order")
    p.add_argument("--width", type=int, default=1280, help="window width in CSS pixels (default 1280)")
    p.add_argument("--max-height", type=int, default=1400, help="crop the picture to this many pixels (default 1400)")
    return p


def type_into(driver, section: str, text: str) -> None:
    """Set the live view's box as a paste would, then wait until the page has run the model on the text."""
    from selenium.webdriver.support.ui import WebDriverWait

    view = "lv" + section.split("-")[-1]
    driver.execute_script("const box = document.getElementById(arguments[0] + '-input'); box.value = arguments[1];"
                          "box.dispatchEvent(new Event('input'));", view, text)
    WebDriverWait(driver, 30).until(lambda d: d.execute_script(
        "const v = charlensLive.views[arguments[0]]; return v && v.text && arguments[1].endsWith(v.text);", view, text))


def screenshot(page: Path, out: Path, section: str | None, text: str | None, clicks: list[str], width: int,
               max_height: int) -> None:
    from PIL import Image

    with chromium() as driver:
        driver.set_window_size(width, max_height + 200)
        driver.get(page.resolve().as_uri())
        if text:
            type_into(driver, section or "live-0", text)
        for selector in clicks:
            driver.execute_script("arguments[0].click()", driver.find_element("css selector", selector))
        if section:
            element = driver.find_element("id", section)
            driver.execute_script("arguments[0].scrollIntoView()", element)
            png = element.screenshot_as_png
        else:
            png = driver.get_screenshot_as_png()
        errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        if errors:
            raise SystemExit(f"screenshots.py: the page logged errors: {errors[0]['message']}")
    image = Image.open(io.BytesIO(png))
    image.crop((0, 0, image.width, min(image.height, max_height))).save(out, optimize=True)
    print(f"{out}: {image.width} x {min(image.height, max_height)} px from {page}")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not (CHROMIUM and CHROMEDRIVER):
        print(f"screenshots.py: {MISSING}", file=sys.stderr)
        return 2
    screenshot(args.page, args.out, args.section, args.text, args.click, args.width, args.max_height)
    return 0


if __name__ == "__main__":
    sys.exit(main())
