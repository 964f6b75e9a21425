"""The operator dashboard in a real headless browser (issue 15): Debian's chromium driven through
chromium-driver by Selenium, against a real ``sovereign-mcp serve`` on loopback with the GPU and media
stand-ins of tests/pipeline/test_pipeline.py. Logs in with an operator token, sees the three GPU services and a
pipeline job move to done, stops the GPU service the job left running through the confirm dialog, and saves
a screenshot under the test's temp dir (``SOVEREIGN_MCP_DASHBOARD_SCREENSHOT=path`` copies it there too).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import operator_token, running_server
from tests.pipeline.test_pipeline import ROLES, World

CHROMEDRIVER = Path("/usr/bin/chromedriver")
pytestmark = [pytest.mark.e2e,
              pytest.mark.skipif(not CHROMEDRIVER.exists(), reason="/usr/bin/chromedriver is missing: install "
                                 "Debian's chromium and chromium-driver (CI does it in .ci/run)")]


@pytest.fixture
def browser() -> Iterator[object]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1800",
                 "--disable-gpu", "--no-first-run", "--disable-extensions", "--disable-background-networking"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def test_login_watch_a_job_finish_and_stop_a_gpu_service(tmp_path: Path, browser: object) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.remote.webdriver import WebDriver
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    driver: WebDriver = browser  # type: ignore[assignment]
    world = World(tmp_path)
    world.sglang.start()
    (tmp_path / "corpus").mkdir()
    (tmp_path / "corpus" / "rack.md").write_text("---\ntitle: The rack\ndate: 2025-03-01\n---\n\n## Power\n\nOne "
                                                 "GPU service at a time.\n")
    try:
        env = {**world.env(), "SOVEREIGN_MCP_DASHBOARD__REFRESH_SECONDS": "0.5"}
        with running_server("--corpus", str(tmp_path / "corpus"), "--data-dir", str(world.data_dir), env=env,
                            log=tmp_path / "server.log") as url:
            wait = WebDriverWait(driver, 60, poll_frequency=0.2)
            driver.get(f"{url}/dashboard")
            assert "fake-sglang" not in driver.page_source  # no data before logging in
            driver.find_element(By.ID, "token").send_keys(operator_token(world.data_dir))
            driver.find_element(By.ID, "login").click()
            try:
                wait.until(ec.presence_of_element_located((By.ID, "svc-fake-sglang")))
            except Exception:
                (tmp_path / "page.html").write_text(driver.page_source)
                raise
            for name in ROLES.values():
                assert driver.find_element(By.ID, f"svc-{name}").get_attribute("data-state") == "stopped"
            for cookie in driver.get_cookies():
                if cookie["name"] == "smcp_dashboard":
                    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == "/dashboard"

            submitter = world.service()  # the stand-in pipeline: the server's worker runs the job
            job_id = submitter.submit("hero_image", "a quiet rack at dusk").job_id
            row = (By.CSS_SELECTOR, f'#job-{job_id}[data-state="done"]')
            wait.until(ec.presence_of_element_located(row))
            wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, f"#job-{job_id} img.hero")))
            last = (By.CSS_SELECTOR, '#svc-fake-sglang[data-state="running"]')
            wait.until(ec.presence_of_element_located(last))  # the job left its last GPU service (the alt text) up

            driver.find_element(By.CSS_SELECTOR, "#svc-fake-sglang button.danger").click()
            dialog = wait.until(ec.visibility_of_element_located((By.ID, "confirm")))
            text = dialog.find_element(By.ID, "confirm-text").text
            assert "Stop fake-sglang" in text, text
            driver.save_screenshot(str(tmp_path / "dashboard-confirm.png"))
            dialog.find_element(By.ID, "confirm-ok").click()
            wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, '#svc-fake-sglang[data-state="stopped"]')))
            wait.until(ec.presence_of_element_located(
                (By.CSS_SELECTOR, '#actions li[data-action="stop"][data-target="fake-sglang"][data-state="done"]')))
            assert world.stack.alive() == []  # the stand-in process is really gone
            shot = tmp_path / "dashboard.png"
            assert driver.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
            if os.environ.get("SOVEREIGN_MCP_DASHBOARD_SCREENSHOT"):
                shutil.copyfile(shot, os.environ["SOVEREIGN_MCP_DASHBOARD_SCREENSHOT"])
            logs = driver.get_log("browser") if hasattr(driver, "get_log") else []
            assert not [entry for entry in logs if entry.get("level") == "SEVERE"], logs
    finally:
        world.close()
