"""End to end in a real browser: `sfteval dashboard` serves the app, headless Debian
Chromium loads it, we look at what it shows, vote once, and keep screenshots.

Needs `chromium` and `chromedriver` (.ci/install-browser.sh); skipped when absent.
Screenshots land in the test's tmp folder, or in $SFTEVAL_SCREENSHOTS when set.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from dash_helpers import IDENTITY, run_ids, serve

from sfteval.ratings import VoteStore, build_study

pytestmark = pytest.mark.browser

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")


@pytest.fixture()
def server(reports: Path, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    db = tmp_path / "ratings.sqlite3"
    with serve(reports, db, tmp_path / "server.log") as url:
        yield url, db


@pytest.fixture()
def browser(tmp_path: Path):
    if not (CHROMIUM and DRIVER):
        pytest.skip("chromium/chromedriver not installed (.ci/install-browser.sh)")
    os.environ.setdefault("SE_OFFLINE", "true")  # Selenium Manager must never download a browser
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
                 f"--user-data-dir={tmp_path / 'chrome-profile'}", "--window-size=1400,1000"):
        opts.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=DRIVER), options=opts)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def _wait_text(driver, needle: str, timeout: float = 60) -> str:
    from selenium.webdriver.common.by import By

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = driver.find_element(By.TAG_NAME, "body").text
        if needle in body:
            return body
        time.sleep(0.5)
    raise AssertionError(f"{needle!r} never appeared; page shows:\n{body[:2000]}")


def _shot(driver, tmp_path: Path, name: str) -> Path:
    folder = Path(os.environ.get("SFTEVAL_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    assert driver.save_screenshot(str(path))
    from PIL import Image

    with Image.open(path) as img:
        assert img.size[0] >= 1000
        colours = img.convert("RGB").getcolors(maxcolors=1 << 20)
        assert colours is None or len(colours) > 50, "screenshot is nearly blank"
    return path


def test_dashboard_in_chromium(server, browser, reports: Path, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    url, db = server
    base, tuned = run_ids(reports)

    browser.get(url)
    body = _wait_text(browser, "2 of 2 runs")
    assert "Runs" in body and "Deploy" not in body  # viewer toolbar: no developer menu
    # The table draws on a canvas (no DOM text): check it is there, then look at the screenshot.
    time.sleep(2.0)
    _shot(browser, tmp_path, "runs.png")
    ids = sorted({e.get_attribute("data-testid") for e in browser.find_elements(By.CSS_SELECTOR, "[data-testid]")})
    assert "stDataFrame" in ids, ids
    # The sidebar navigation renders a moment after the page body on a loaded box (CI saw the
    # body without it), so wait for each entry rather than read the first snapshot.
    for page in ("Compare", "Samples", "Checkpoints", "Rate", "Ratings"):
        _wait_text(browser, page, timeout=30)  # the navigation lists every page
    _shot(browser, tmp_path, "runs.png")

    study = build_study(base, tuned, "chat")
    VoteStore(db).create_study(study)
    browser.get(f"{url}/rate?study={study.study_id}&rater=ann")
    _wait_text(browser, "Which answer is better?")
    _wait_text(browser, "careful answer")  # blocks render a moment after the rest
    body = _wait_text(browser, "short reply")
    assert "0 of 12 rated" in body
    for secret in (*IDENTITY, base.name, tuned.name):
        assert secret not in body
        assert secret not in browser.page_source
    _shot(browser, tmp_path, "rate.png")

    browser.find_element(By.XPATH, "//button[.//*[starts-with(normalize-space(text()), 'A is better')]]").click()
    _wait_text(browser, "1 of 12 rated")
    votes = VoteStore(db).votes(study.study_id)
    assert [(v["rater"], v["choice"]) for v in votes] == [("ann", "A")]
    _shot(browser, tmp_path, "rate-after-vote.png")


@pytest.fixture()
def rater_server(reports: Path, tmp_path: Path) -> Iterator[tuple[str, Path, dict[str, str], str]]:
    """`sfteval dashboard --rate round-1` for real, with two raters and a second study."""
    db = tmp_path / "ratings.sqlite3"
    base, tuned = run_ids(reports)
    store = VoteStore(db)
    store.create_study(build_study(base, tuned, "chat", study_id="round-1", overlap=2))
    store.create_study(build_study(base, tuned, "gsm8k", study_id="round-2"))
    tokens = dict(store.add_raters("round-1", ["Ana", "Ben"]))
    (_, other), = store.add_raters("round-2", ["Ana"])
    with serve(reports, db, tmp_path / "rater-server.log", extra=["--rate", "round-1"]) as url:
        yield url, db, tokens, other


def test_rater_link_in_chromium_reaches_only_the_rate_page(rater_server, browser, reports: Path,
                                                            tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    url, db, tokens, other = rater_server
    base, tuned = run_ids(reports)
    secrets_ = (*IDENTITY, base.name, tuned.name, str(reports), "round-2", "Compare", "Samples", "Ratings")
    # No token, a wrong one, another study's, on every path a full dashboard would have:
    # one neutral line, no study list, no page list, no run name.
    for path in ("/", "/runs", "/compare", "/samples", "/checkpoints", "/ratings", "/rate"):
        for query in ("", "?t=nonsense", f"?t={tokens['Ana'][:-2]}xx", f"?t={other}"):
            browser.get(f"{url}{path}{query}")
            body = _wait_text(browser, "personal rating link")
            for secret in secrets_:
                assert secret not in body, (path, query, secret)
    _shot(browser, tmp_path, "rater-no-token.png")
    # Ana's link, even on another page's path, is Ana's Rate page and only that.
    browser.get(f"{url}/compare?t={tokens['Ana']}")
    _wait_text(browser, "Signed in as Ana")
    body = _wait_text(browser, "Which answer is better?")
    for secret in secrets_:
        assert secret not in body, secret
        assert secret not in browser.page_source, secret
    assert not browser.find_elements(By.CSS_SELECTOR, "[data-testid='stSidebarNav']")
    store = VoteStore(db)
    mine = store.order_for("round-1", "ana")
    _wait_text(browser, f"0 of {len(mine)} rated")
    _shot(browser, tmp_path, "rater-rate.png")
    # A vote by hotkey lands as Ana; Ben's link then sees none of it.
    first = store.next_item("round-1", "ana")
    browser.find_element(By.TAG_NAME, "body").send_keys("b")
    _wait_text(browser, f"1 of {len(mine)} rated")
    assert [(v["rater"], v["item"], v["choice"]) for v in store.votes("round-1")] == [("ana", first, "B")]
    browser.find_element(By.XPATH, "//button[.//*[starts-with(normalize-space(text()), 'A is better')]]").click()
    _wait_text(browser, f"2 of {len(mine)} rated")
    browser.get(f"{url}/?t={tokens['Ben']}")
    _wait_text(browser, "Signed in as Ben")
    body = _wait_text(browser, f"0 of {len(store.order_for('round-1', 'ben'))} rated")
    assert "Ana" not in body
    _shot(browser, tmp_path, "rater-ben.png")
    log = (tmp_path / "rater-server.log").read_text()
    for token in (*tokens.values(), other):  # never logged, by us or by the server
        assert token.split(".")[1] not in log


# Every page of the full dashboard by its deep link: each must render its own title (not
# "Page not found"), show no exception box, and leave a screenshot. (#20)
PAGES = {"/runs": "Runs", "/compare": "Compare", "/samples": "Samples", "/checkpoints": "Checkpoints",
         "/rate": "Rate", "/ratings": "Ratings", "/": "Runs"}


def test_every_page_by_deep_link_without_exceptions(server, browser, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    url, _ = server
    for path, title in PAGES.items():
        browser.get(f"{url}{path}")
        deadline = time.monotonic() + 60
        heads: list[str] = []
        while title not in heads and time.monotonic() < deadline:  # the sidebar names it before the page draws
            time.sleep(0.5)
            heads = [h.text for h in browser.find_elements(By.CSS_SELECTOR, "h1")]
        assert title in heads, (path, heads)
        time.sleep(2.5)  # let the page finish its run (charts and tables draw after the title)
        body = browser.find_element(By.TAG_NAME, "body").text
        assert "Page not found" not in body, path
        errors = browser.find_elements(By.CSS_SELECTOR, "[data-testid='stException']")
        assert not errors, (path, [e.text[:500] for e in errors])
        _shot(browser, tmp_path, f"page{path.replace('/', '-') or '-home'}.png")
