"""Notebook 05 in JupyterLab, in a real headless browser: run it in fast mode and check that the pair
explorer renders as a widget and redraws when another pair is picked.

Needs Debian's `chromium` and `chromium-driver` (scripts/test.sh installs them when it can) and selenium.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(not (CHROMIUM and DRIVER), reason="chromium and chromedriver are not installed "
                                "(apt-get install chromium chromium-driver; scripts/test.sh does it)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def lab(tmp_path):
    """A JupyterLab server on a copy of notebook 05 whose parameters ask for fast mode; the kernel sees no CI
    variable, so the explorer is a live widget."""
    nb = json.loads((ROOT / "notebooks" / "05_multidelete.ipynb").read_text())
    params = next(c for c in nb["cells"] if "parameters" in c["metadata"].get("tags", []))
    params["source"] = ["fast = True\n", "seed = 0\n", 'task = "retrieval"\n', "df_size = 0.05\n",
                        'output_dir = ""\n', 'device = "cpu"\n']
    (tmp_path / "05_multidelete.ipynb").write_text(json.dumps(nb))
    port, token = free_port(), "mdlib-browser-test"
    # no CI or MDLIB_BATCH (the explorer is then a live widget), no MPLBACKEND=Agg (figures then show inline)
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "MDLIB_BATCH", "MPLBACKEND")}
    env["MDLIB_RUNS"] = str(tmp_path / "runs")
    # every cell stays in the page (JupyterLab otherwise renders only the cells near the viewport)
    settings = tmp_path / "lab-settings" / "@jupyterlab" / "notebook-extension"
    settings.mkdir(parents=True)
    (settings / "tracker.jupyterlab-settings").write_text(json.dumps({"windowingMode": "none"}))
    env["JUPYTERLAB_SETTINGS_DIR"] = str(tmp_path / "lab-settings")
    log = (tmp_path / "jupyterlab.log").open("w")
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root", f"--port={port}",
         f"--IdentityProvider.token={token}",
         "--ServerApp.ip=127.0.0.1", f"--ServerApp.root_dir={tmp_path}", "--LabApp.news_url=None",
         "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"],
        env=env, stdout=subprocess.DEVNULL, stderr=log)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            if server.poll() is not None:
                pytest.fail("JupyterLab exited:\n" + (tmp_path / "jupyterlab.log").read_text()[-2000:])
            try:
                urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=1)
                break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail("JupyterLab did not start within 60 s:\n" + (tmp_path / "jupyterlab.log").read_text()[-2000:])
        yield f"{url}/lab/tree/05_multidelete.ipynb?token={token}"
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()


@pytest.fixture
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(executable_path=DRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def test_notebook_05_pair_explorer_renders_and_reacts(lab, browser):
    pytest.importorskip("selenium")
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ready
    from selenium.webdriver.support.ui import Select, WebDriverWait

    browser.get(lab)
    wait = WebDriverWait(browser, 120)
    wait.until(ready.presence_of_element_located((By.CSS_SELECTOR, ".jp-NotebookPanel .jp-Cell")))
    wait.until(ready.presence_of_element_located((By.CSS_SELECTOR, ".jp-Notebook-ExecutionIndicator, .jp-KernelStatus")))
    menu = next(e for e in browser.find_elements(By.CSS_SELECTOR, ".lm-MenuBar-itemLabel") if e.text == "Run")
    menu.click()
    wait.until(ready.element_to_be_clickable((By.CSS_SELECTOR, 'li[data-command="runmenu:run-all"]'))).click()

    # the explorer: a drop-down of deleted pairs above an output that shows the picked pair; the page is
    # re-read at every look, as JupyterLab may redraw the cell while the notebook runs
    def explorer():
        for select in browser.find_elements(By.CSS_SELECTOR, ".widget-dropdown select"):
            box = select.find_element(By.XPATH, "./ancestor::div[contains(@class, 'widget-vbox')][1]")
            images = box.find_elements(By.CSS_SELECTOR, ".widget-output img")
            if images:
                return select, images[0].get_attribute("src")
        return None

    # the notebook trains its models first when the cache is empty, beside the other test worker: 10 minutes
    # were too few on a CPU without bfloat16 (half the speed); the wait ends as soon as the explorer shows
    patient = WebDriverWait(browser, 1800, poll_frequency=1, ignored_exceptions=(StaleElementReferenceException,))
    select, first = patient.until(lambda _: explorer())
    options = Select(select).options
    assert len(options) > 2 and options[0].text.startswith("image ")
    Select(select).select_by_index(2)
    select, second = patient.until(lambda _: (explorer() or (None, first))[1] != first and explorer())
    assert second.startswith("data:image/png")
