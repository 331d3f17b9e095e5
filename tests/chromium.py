"""Debian's Chromium, headless, for the page tests and bench/live_page_speed.py: a fresh profile per
session, background networking off; `performance_log` records every request (Chromium's performance log)."""
from __future__ import annotations

import shutil
import tempfile
from contextlib import contextmanager
from typing import Iterator

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
MISSING = "no chromium/chromedriver on PATH (Debian: apt-get install chromium chromium-driver)"


@contextmanager
def chromium(performance_log: bool = False) -> Iterator["selenium.webdriver.Chrome"]:  # noqa: F821
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    profile = tempfile.mkdtemp(prefix="charlens-chromium-")
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--no-first-run", "--disable-component-update", "--disable-sync",
                "--window-size=1280,1600", f"--user-data-dir={profile}"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", **({"performance": "ALL"} if performance_log else {})})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
