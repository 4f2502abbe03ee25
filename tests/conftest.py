"""Shared helpers: write prediction records to files, find the shared data."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

MELD = ("neutral", "joy", "surprise", "anger", "sadness", "disgust", "fear")


def record(instance, agent, candidates, *, gold=None, quality=None, dataset=None, **extra):
    """One contract record; ``candidates`` is a list of (label, confidence)."""
    out = {
        "instance_id": instance,
        "agent": agent,
        "candidates": [{"label": label, "confidence": conf} for label, conf in candidates],
    }
    if gold is not None:
        out["gold"] = gold
    if quality is not None:
        out["quality"] = quality
    if dataset is not None:
        out["dataset"] = dataset
    out.update(extra)
    return out


@pytest.fixture
def write_jsonl(tmp_path):
    def write(records, name="predictions.jsonl"):
        path = tmp_path / name
        with path.open("w", encoding="utf-8") as handle:
            for rec in records:
                handle.write((rec if isinstance(rec, str) else json.dumps(rec, ensure_ascii=False)) + "\n")
        return path

    return write


def shared_data() -> Path | None:
    """``$MODSAB_DATA`` or ``../shared/data`` beside the checkout, when present."""
    env = os.environ.get("MODSAB_DATA")
    candidates = [Path(env)] if env else []
    candidates.append(Path(__file__).resolve().parents[1].parent / "shared" / "data")
    for path in candidates:
        if path.is_dir():
            return path
    return None


def data_root() -> Path:
    """The shared data folder (may not exist: fixtures below skip with the reason)."""
    return shared_data() or Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def meld_descriptions() -> Path:
    path = data_root() / "meld_descriptions" / "meld_annotation.json"
    if not path.exists():
        pytest.skip(f"MELD descriptions not found at {path} (set MODSAB_DATA to the shared data folder)")
    return path


@pytest.fixture
def data_dir() -> Path:
    path = shared_data()
    if path is None:
        pytest.skip("shared data not found: set MODSAB_DATA or place ../shared/data beside the checkout")
    return path


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


def watched_page(browser):
    """A new page that collects console errors, page errors and dialogs in ``page.problems``
    (a test asserts it stays empty: a script error or an ``alert`` from an XSS probe fails it)."""
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.problems = []
    page.on("console", lambda m: m.type == "error" and page.problems.append(f"console: {m.text}"))
    page.on("pageerror", lambda e: page.problems.append(f"pageerror: {e}"))

    def on_dialog(dialog):
        page.problems.append(f"dialog: {dialog.message}")
        dialog.dismiss()

    page.on("dialog", on_dialog)
    return page


@pytest.fixture
def open_page(chromium):
    """Open a local file, watched (see :func:`watched_page`)."""
    pages = []

    def opener(path: Path):
        page = watched_page(chromium)
        page.goto(path.resolve().as_uri())
        page.wait_for_selector("#ib-count[data-count]:not([data-count=''])")
        pages.append(page)
        return page

    yield opener
    for page in pages:
        page.close()
