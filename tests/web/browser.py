"""Headless Chromium for the web view's browser tests (Debian's ``chromium`` and ``chromium-driver``).

Usage::

    with chromium(tmp_path) as browser:      # pytest.skip() with the reason when the packages are missing
        browser.get(url); browser.save_screenshot(str(tmp_path / "runs.png"))

Screenshots also go to ``$LOCALAGENT_SCREENSHOT_DIR`` when it is set (how ``docs/*.png`` are refreshed).
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")
DRIVER_NAMES = ("chromedriver",)
FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--hide-scrollbars",
)


DOC_SCREENSHOTS = frozenset({"runs", "run", "flows", "agents", "agents-error", "login", "runs-phone", "run-phone"})
"""the screenshots docs/web.md shows (as docs/web-<name>.png)"""


def _which(names: tuple[str, ...]) -> str | None:
    return next((found for name in names if (found := shutil.which(name))), None)


@contextmanager
def chromium(tmp_path: Path, width: int = 1280, height: int = 900) -> Iterator[Any]:
    binary, driver_path = _which(CHROMIUM_NAMES), _which(DRIVER_NAMES)
    if binary is None or driver_path is None:
        pytest.skip("headless browser tests need Debian's chromium and chromium-driver (apt-get install -y ...)")
    webdriver = pytest.importorskip("selenium.webdriver", reason="the browser tests need selenium (dev extra)")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in FLAGS:
        options.add_argument(flag)
    profile = tmp_path / "chromium-profile"
    profile.mkdir(exist_ok=True)
    options.add_argument(f"--user-data-dir={profile}")
    options.add_argument(f"--window-size={width},{height}")
    browser = webdriver.Chrome(options=options, service=Service(executable_path=driver_path))
    try:
        yield browser
    finally:
        browser.quit()


def screenshot(browser: Any, tmp_path: Path, name: str) -> Path:
    """The whole page (up to 2,400 px tall), not only the part in the window."""
    path = tmp_path / f"{name}.png"
    width, height = browser.get_window_size()["width"], browser.get_window_size()["height"]
    full = int(browser.execute_script("return document.documentElement.scrollHeight"))
    browser.set_window_size(width, min(max(full + 140, height), 2400))
    try:
        browser.save_screenshot(str(path))
    finally:
        browser.set_window_size(width, height)
    extra = os.environ.get("LOCALAGENT_SCREENSHOT_DIR")
    if extra and name in DOC_SCREENSHOTS:
        shutil.copyfile(path, Path(extra) / f"web-{name}.png")
    return path


def eventually(check: Callable[[], Any], *, timeout: float = 30.0, what: str = "condition") -> Any:
    """``check()`` until it returns something true (exceptions count as not yet), or fail naming ``what``."""
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            value = check()
            if value:
                return value
        except Exception as exc:  # a stale element between two live refreshes: look again
            last = exc
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}" + (f" (last error: {last!r})" if last else ""))


def mark_page(browser: Any) -> None:
    """Tag the loaded document: ``page_was_reloaded`` is True only if the browser loaded another one since."""
    browser.execute_script("document.documentElement.setAttribute('data-test-mark', 'kept')")


def page_was_reloaded(browser: Any) -> bool:
    return browser.execute_script("return document.documentElement.getAttribute('data-test-mark')") != "kept"


def no_alert(browser: Any) -> bool:
    from selenium.common.exceptions import NoAlertPresentException

    try:
        browser.switch_to.alert  # noqa: B018  (raises when no dialog is open)
    except NoAlertPresentException:
        return True
    return False
