"""The landing page in a real browser: Debian's headless Chromium, driven by Debian's
chromium-driver through selenium, loads `serve`'s page for a trapped, a healthy, an
undecidable and a hostile host and reads what a person reads: the verdict, every row of
`dkms-exporter check`'s table (compared with the real `check` of the same tree), the kernels
and their roles, the collectors, and the links to /metrics and /runbooks (followed).

Screenshots: `UPDATE_SCREENSHOTS=1 pytest tests/test_browser.py` writes docs/img/landing-*.png,
which docs/deploy.md shows; without it they go to the test's tmp directory (a run never dirties
the checkout) and the committed ones must exist.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Iterator

import pytest

from hostbuilder import Host
from testkit import Served, require_tool, run_exporter

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples" / "hosts"
IMG = REPO / "docs" / "img"
HOSTILE_DKMS = "<img src=x onerror=alert(1)>"
HOSTILE_MODULE = "evil\"&'<b>"


def undecidable_host(root: Path) -> Path:
    """examples/hosts/healthy where a dkms.conf cannot be read (a directory stands in its place):
    the dkms collector fails, so the verdict is unknown, never a guessed "ready"."""
    shutil.copytree(EXAMPLES / "healthy", root, symlinks=True)
    conf = root / "usr" / "src" / "acpi-call-1.2.2" / "dkms.conf"
    conf.unlink()
    conf.mkdir()
    return root


def hostile_host(root: Path) -> Path:
    """A DKMS module and a kernel module whose names are HTML (a name is any bytes but '/')."""
    h = Host(root)
    h.kernel("6.1.0-27-amd64", running=True)
    h.kernel("6.1.0-28-amd64")
    h.dkms(HOSTILE_DKMS, "1.0", dest=[HOSTILE_MODULE])
    h.dkms_build(HOSTILE_DKMS, "1.0", "6.1.0-27-amd64", dest=[HOSTILE_MODULE])
    h.grub()
    h.finish()
    return root


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    from selenium import webdriver  # the test extra (pyproject.toml): a missing one fails, never skips

    options = webdriver.ChromeOptions()
    options.binary_location = require_tool("chromium")
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--window-size=1280,1000", "--lang=en-US"):
        options.add_argument(flag)
    service = webdriver.ChromeService(executable_path=require_tool("chromedriver"))
    driver = webdriver.Chrome(options=options, service=service)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def hosts(tmp: Path) -> dict[str, Path]:
    return {"reboot-trap": EXAMPLES / "reboot-trap", "healthy": EXAMPLES / "healthy",
            "undecidable": undecidable_host(tmp / "undecidable"), "hostile": hostile_host(tmp / "hostile")}


def check_rows(root: Path) -> tuple[str, list[list[str]]]:
    """The real `dkms-exporter check`: its last line and its table's rows, cell by cell."""
    result = run_exporter("check", "--path.rootfs", str(root))
    assert result.returncode in (0, 1, 2), result.stderr
    lines = result.stdout.splitlines()
    table = []
    for line in lines[1:]:
        if not line.strip():
            break
        table.append(re.split(r"\s{2,}", line.strip(), maxsplit=6))
    return lines[-1], table


def screenshot(driver: object, name: str, tmp: Path) -> Path:
    target = IMG if os.environ.get("UPDATE_SCREENSHOTS") else tmp
    target.mkdir(parents=True, exist_ok=True)
    path = target / f"landing-{name}.png"
    height = int(driver.execute_script("return document.documentElement.scrollHeight"))  # type: ignore[attr-defined]
    # the whole page, not the window: headless Chromium's window is capped at its screen size
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",  # type: ignore[attr-defined]
                           {"width": 1280, "height": min(height, 4000), "deviceScaleFactor": 1, "mobile": False})
    try:
        assert driver.save_screenshot(str(path)), path  # type: ignore[attr-defined]
    finally:
        driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})  # type: ignore[attr-defined]
    return path


@pytest.mark.parametrize("name", ["reboot-trap", "healthy", "undecidable", "hostile"])
def test_landing_page_reads_as_check(browser: object, name: str, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    root = hosts(tmp_path)[name]
    last_line, table = check_rows(root)
    with Served(root) as exporter:
        browser.get(exporter.url + "/")  # type: ignore[attr-defined]
        d = browser
        assert d.find_elements(By.TAG_NAME, "script") == []  # type: ignore[attr-defined]
        verdict = d.find_element(By.ID, "verdict").text  # type: ignore[attr-defined]
        assert d.find_element(By.ID, "summary").text == last_line  # type: ignore[attr-defined]
        first = d.find_element(By.TAG_NAME, "table")  # type: ignore[attr-defined]
        shown = [[c.text for c in tr.find_elements(By.TAG_NAME, "td")]
                 for tr in first.find_elements(By.CSS_SELECTOR, "tbody tr")]
        assert shown == [row for row in table[1:]], "the page's rows are check's rows"
        assert [h.text for h in first.find_elements(By.TAG_NAME, "th")] == table[0]
        body = d.find_element(By.TAG_NAME, "body").text  # type: ignore[attr-defined]
        assert "Installed kernels" in body and "Collectors" in body
        if name == "reboot-trap":
            assert verdict == "NOT READY · boot targets: 6.1.0-28-amd64"
            assert "apt-get install linux-headers-6.1.0-28-amd64 && dkms install acpi-call/1.2.2 -k 6.1.0-28-amd64" in body
            assert "6.1.0-28-amd64 newest, next_boot, target not_ready" in body
        elif name == "healthy":
            assert verdict == "READY · boot targets: 6.1.0-28-amd64"
            assert "BROKEN" not in body
        elif name == "undecidable":
            assert verdict.startswith("UNKNOWN")
            assert "error: dkms: /usr/src/acpi-call-1.2.2/dkms.conf: Is a directory" in body
            assert "dkms failed" in body
        else:  # hostile: the names read as text, and nothing the host wrote became markup
            assert HOSTILE_MODULE in body and f"dkms install {HOSTILE_DKMS}/1.0 -k 6.1.0-28-amd64" in body
            assert d.find_elements(By.TAG_NAME, "img") == [] and d.find_elements(By.TAG_NAME, "b") == []
        shot = screenshot(d, name, tmp_path)
        assert shot.stat().st_size > 10_000
        links = {a.text: a.get_attribute("href") for a in d.find_elements(By.CSS_SELECTOR, "p a")}
        assert links["Metrics"] == exporter.url + "/metrics" and links["Runbooks"] == exporter.url + "/runbooks"
        reasons = d.find_elements(By.CSS_SELECTOR, 'a[href*="/runbooks#reason-"]')  # type: ignore[attr-defined]
        if reasons:  # follow the first reason to its runbook entry
            reason = reasons[0].text
            reasons[0].click()
            assert d.current_url == f"{exporter.url}/runbooks#reason-{reason}"  # type: ignore[attr-defined]
            assert d.find_element(By.ID, f"reason-{reason}").text == reason  # type: ignore[attr-defined]
        d.get(exporter.url + "/metrics")  # type: ignore[attr-defined]
        assert "dkms_next_boot_ready" in d.find_element(By.TAG_NAME, "body").text  # type: ignore[attr-defined]


def test_docs_show_the_screenshots() -> None:
    text = (REPO / "docs" / "deploy.md").read_text()
    for name in ("reboot-trap", "healthy", "undecidable"):
        assert (IMG / f"landing-{name}.png").is_file(), "run: UPDATE_SCREENSHOTS=1 pytest tests/test_browser.py"
        assert f"img/landing-{name}.png" in text
