import os
import shutil
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("MODSAB_CHROMIUM", "/usr/bin/chromium")
LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


@pytest.fixture(scope="session")
def chromium():
    """Headless Debian Chromium driven by Playwright; never downloads a browser."""
    if not (Path(CHROMIUM).exists() or shutil.which(CHROMIUM)):
        pytest.skip(f"no Chromium at {CHROMIUM}: apt-get install -y chromium (or set MODSAB_CHROMIUM)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (browser tests)")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=LAUNCH_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def open_page(chromium):
    """Open a local file; collect console errors, page errors and dialogs."""
    pages = []

    def opener(path: Path):
        page = chromium.new_page(viewport={"width": 1400, "height": 1000})
        page.problems = []
        page.on("console", lambda m: m.type == "error" and page.problems.append(f"console: {m.text}"))
        page.on("pageerror", lambda e: page.problems.append(f"pageerror: {e}"))

        def on_dialog(dialog):
            page.problems.append(f"dialog: {dialog.message}")
            dialog.dismiss()

        page.on("dialog", on_dialog)
        page.goto(path.resolve().as_uri())
        page.wait_for_selector("#ib-count[data-count]:not([data-count=''])")
        pages.append(page)
        return page

    yield opener
    for page in pages:
        page.close()
