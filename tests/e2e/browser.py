"""Headless Debian Chromium driven by Selenium, pointed at a ComfyUI server's real frontend."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from conftest import ROOT, need_tool

ARTIFACTS = ROOT / "artifacts"  # screenshots (git-ignored)


def chromium(profile: Path):
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    need_tool("chromium")
    need_tool("chromedriver")
    binary, driver = shutil.which("chromium"), shutil.which("chromedriver")
    options = Options()
    options.binary_location = binary
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--no-first-run", f"--user-data-dir={profile}",
                "--window-size=1600,1000", "--autoplay-policy=no-user-gesture-required"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(driver), options=options)


def open_frontend(browser, server, timeout: float = 120):
    """Load the frontend and wait until its app has its graph and the node definitions."""
    server.post("/settings/Comfy.TutorialCompleted", True)  # no first-run template browser over the canvas
    browser.get(server.url)
    wait_for(browser, "return !!(window.app && window.app.graph && window.LiteGraph && "
                      "LiteGraph.registered_node_types['RESTStreamingSampler'])", timeout)


def fit_view(browser):
    browser.execute_script("return app.extensionManager.command.execute('Comfy.Canvas.FitView')")
    time.sleep(0.3)


def wait_for(browser, script: str, timeout: float = 60, *args):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = browser.execute_script(script, *args)
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for: {script}")


def console_errors(browser) -> list[str]:
    return [e["message"] for e in browser.get_log("browser") if e["level"] == "SEVERE"]


def alerts(browser) -> list[str]:
    """The frontend's toast messages on screen (workflow validation errors show there, not on the console)."""
    return browser.execute_script(
        "return [...document.querySelectorAll('.p-toast-message')].map(t => t.innerText)")
