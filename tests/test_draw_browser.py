"""The HTML picture in a real headless Chromium, used as a person would: every layer is
drawn, clicking a layer with a finding shows the finding and its rule, search finds a
blob, the findings list jumps to its layer. A screenshot is saved in the test's
temporary folder.

Needs the system's chromium and chromium-driver (.ci/run installs them) and selenium
(the test extra). Outside CI the test skips when they are missing; under CI it fails.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from conftest import FIXTURES

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
NET = FIXTURES / "examples" / "tiny_resnet_deploy_by_hand.prototxt"


def _missing() -> str | None:
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[test]')"
    for path in (CHROMIUM, CHROMEDRIVER):
        if not os.path.exists(path):
            return f"{path} is missing (apt-get install chromium chromium-driver)"
    return None


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    why = _missing()
    if why:
        if os.environ.get("CI"):
            pytest.fail(f"the browser test must run in CI: {why}")
        pytest.skip(why)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--window-size=1400,900",
                 f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def _open(browser, path: Path) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(path.resolve().as_uri())
    WebDriverWait(browser, 30).until(
        lambda d: d.execute_script("return document.body.dataset.ready === '1'"))


def _search(browser, text: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    box = browser.find_element(By.ID, "search")
    box.send_keys(Keys.CONTROL, "a")
    box.send_keys(Keys.DELETE)
    box.send_keys(text)


def test_html_in_chromium(browser, tmp_path, run_cli):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    from bnlint.draw import picture_of

    out = tmp_path / "net.html"
    code, _, err = run_cli("draw", str(NET), "-o", str(out))
    assert code == 0, err
    picture = picture_of(str(NET))
    layer_names = [m.name for m in picture.members() if m.kind == "layer"]
    _open(browser, out)

    # every layer is rendered, with a visible box
    drawn = browser.execute_script(
        "return [...document.querySelectorAll('#canvas .layer')].map(e => "
        "[e.dataset.name, e.getBoundingClientRect().width > 0])")
    assert sorted(name for name, _ in drawn) == sorted(layer_names)
    assert all(visible for _, visible in drawn)
    assert browser.find_element(By.ID, "finding-list").text.count("BN010") == 1

    # click the layer that has a finding: its finding and its rule's text are shown
    _search(browser, "res2a/bn")
    browser.find_element(By.ID, "search").send_keys(Keys.ENTER)
    member = next(i for i, m in enumerate(picture.members()) if m.name == "res2a/bn")
    ActionChains(browser).move_to_element(browser.find_element(By.ID, f"L{member}")).click() \
        .perform()
    details = browser.find_element(By.ID, "details")
    assert details.is_displayed()
    assert details.find_element(By.TAG_NAME, "h2").text == "res2a/bn"
    codes = [li.get_attribute("data-code")
             for li in details.find_elements(By.CSS_SELECTOR, ".layer-findings > li")]
    assert codes == ["BN010"]
    assert "bnlint rules BN010" in details.find_element(By.CSS_SELECTOR, "pre.rule").text

    # search finds a blob and jumps to the layer that writes it
    _search(browser, "pool")
    hits = browser.find_elements(By.CSS_SELECTOR, "#results li.hit-blob")
    assert [h.text for h in hits] == ["blob pool (top of pool)"]
    hits[0].click()
    assert details.find_element(By.TAG_NAME, "h2").text == "pool"

    # the findings list jumps to the layer of a finding
    item = next(li for li in browser.find_elements(By.CSS_SELECTOR, "#finding-list > li")
                if li.get_attribute("data-code") == "BN021")
    item.click()
    assert details.find_element(By.TAG_NAME, "h2").text == "conv1/bn"
    selected = browser.execute_script(
        "return [...document.querySelectorAll('.layer.selected')].map(e => e.dataset.name)")
    assert selected == ["conv1/bn"]

    shot = tmp_path / "draw.png"
    assert browser.save_screenshot(str(shot))
    assert shot.stat().st_size > 10_000


def test_diff_page_in_chromium(browser, tmp_path, run_cli):
    """The --diff page: a changed layer lists its changed fields, a removed one says so."""
    from selenium.webdriver.common.by import By

    out = tmp_path / "diff.html"
    train = FIXTURES / "examples" / "tiny_resnet_train_val.prototxt"
    code, _, err = run_cli("draw", str(train), "--diff", str(NET), "-o", str(out))
    assert code == 0, err
    _open(browser, out)
    browser.find_element(By.CSS_SELECTOR, ".removed-layer[data-name='loss']").click()
    details = browser.find_element(By.ID, "details")
    assert details.find_element(By.TAG_NAME, "h2").text == "loss"
    assert details.find_element(By.CSS_SELECTOR, ".status").text == "removed"
    _search(browser, "conv1/bn")
    browser.find_element(By.CSS_SELECTOR, "#results li.hit-layer").click()
    assert details.find_element(By.CSS_SELECTOR, ".status").text == "changed"
    assert "batch_norm_param.use_global_stats" in details.text
    assert browser.save_screenshot(str(tmp_path / "diff.png"))
