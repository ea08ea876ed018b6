"""qa serve's chat page in a real headless browser: Debian's chromium, driven by selenium
through chromium-driver, against ``qa serve`` with the real model.

The bundled article and a document holding ``<script>alert(1)</script>`` are indexed;
the test asks, follows up, is refused, recalls with Up, and checks that document text
is shown as text. It writes the README's screenshot, docs/serve.png. bin/test installs
chromium (bin/setup --browser); without it the test is skipped with that reason.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from qa.paths import BUNDLED_ARTICLE

REPO = Path(__file__).resolve().parents[1]
SCREENSHOT = REPO / "docs" / "serve.png"
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage")
GARDEN = """Garden <b>notes</b>

The tomato seedlings in the greenhouse need watering every morning before nine. The label painted on \
the garden shed door reads <script>alert(1)</script> in red letters, left there by the previous owner as a joke.
"""

pytestmark = [pytest.mark.model, pytest.mark.browser, pytest.mark.slow]


def browser_or_skip() -> tuple[str, str]:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if not (chromium and driver):
        pytest.skip("needs Debian's chromium and chromium-driver (bin/setup --browser installs them as root)")
    return chromium, driver


def qa_env() -> dict[str, str]:
    env = {**os.environ, "QA_CACHE_DIR": str(REPO / ".cache"), "NO_COLOR": "1"}
    env.pop("QA_MODEL", None)
    env.pop("QA_SERVE_TOKEN", None)
    return env


@pytest.fixture
def server(tmp_path):
    """``qa serve`` on a free port over the article and the garden notes; yields its URL."""
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    shutil.copy(BUNDLED_ARTICLE, corpus / "article.txt")
    (corpus / "garden.txt").write_text(GARDEN, encoding="utf-8")
    index_dir = tmp_path / "index"
    qa = [sys.executable, "-m", "qa.cli"]
    built = subprocess.run([*qa, "index", str(corpus), "--index-dir", str(index_dir)],
                           capture_output=True, text=True, env=qa_env(), timeout=600)
    assert built.returncode == 0, built.stderr
    process = subprocess.Popen([*qa, "serve", "--port", "0", "--index-dir", str(index_dir)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=qa_env())
    try:
        line = process.stdout.readline()
        found = re.search(r"http://127\.0\.0\.1:\d+/", line)
        assert found, (line, process.stderr.read() if process.poll() is not None else "")
        yield found.group(0)
    finally:
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    assert "Traceback" not in err and "qa serve: stopped" in out


@pytest.fixture
def browser(tmp_path):
    chromium, driver_path = browser_or_skip()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path / 'chromium-profile'}")
    options.add_argument("--window-size=1000,1000")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=driver_path))
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def test_the_page_answers_follows_up_refuses_and_shows_document_text_as_text(server, browser):
    from selenium.common.exceptions import NoAlertPresentException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, 60)
    browser.get(server)
    wait.until(lambda d: "passages" in d.find_element(By.ID, "status").text)
    box = browser.find_element(By.ID, "question")

    def ask(question: str):
        turns = len(browser.find_elements(By.CSS_SELECTOR, ".turn"))
        box.send_keys(question, Keys.ENTER)  # Enter asks
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, ".turn .answer, .turn .error")) > turns)
        turn = browser.find_elements(By.CSS_SELECTOR, ".turn")[-1]
        assert not turn.find_elements(By.CSS_SELECTOR, ".error"), turn.text
        return turn.find_element(By.CSS_SELECTOR, ".answer")

    # The question of the README: the Mohajer-6 passage, its answering sentence highlighted.
    answer = ask("Which drones did Russia import?")
    assert answer.get_attribute("data-found") == "true"
    card = answer.find_element(By.CSS_SELECTOR, ".card")
    assert "Mohajer-6" in card.find_element(By.CSS_SELECTOR, "mark").text
    meta = card.find_element(By.CSS_SELECTOR, ".meta").text
    assert "Rusia Akan Membeli" in meta and "article.txt, line" in meta and re.search(r"score 0\.\d{3}", meta)
    assert box.get_attribute("value") == ""

    # Up recalls the last question; Shift-Enter is a new line, not a question.
    box.send_keys(Keys.ARROW_UP)
    assert box.get_attribute("value") == "Which drones did Russia import?"
    box.clear()
    box.send_keys("first line", Keys.SHIFT, Keys.ENTER, Keys.SHIFT, "second line")
    assert box.get_attribute("value") == "first line\nsecond line"
    assert len(browser.find_elements(By.CSS_SELECTOR, ".turn")) == 1
    box.clear()

    # A follow-up is read with the conversation's topic.
    answer = ask("What will they be used for?")
    assert "read as a follow-up to: Which drones did Russia import?" in answer.text
    assert "Mohajer-6" in answer.find_element(By.CSS_SELECTOR, ".card").text

    # Off topic: refused, the closest passage dimmed.
    answer = ask("Who won the football world cup in 2018?")
    assert answer.get_attribute("data-found") == "false"
    assert "No answer" in answer.find_element(By.CSS_SELECTOR, ".no-answer").text
    assert "dimmed" in answer.find_element(By.CSS_SELECTOR, ".card").get_attribute("class")

    # The sources, expandable; a question copied as a qa ask command.
    browser.find_element(By.CSS_SELECTOR, "#sources > summary").click()
    items = browser.find_elements(By.CSS_SELECTOR, "#source-list > li")
    assert len(items) == 2 and "Sources (2 documents)" in browser.find_element(By.ID, "sources").text
    browser.find_elements(By.CSS_SELECTOR, ".turn .copy")[0].click()
    wait.until(lambda d: d.find_element(By.ID, "copied").text)
    assert browser.find_element(By.ID, "copied").text.endswith("qa ask 'Which drones did Russia import?'")
    SCREENSHOT.parent.mkdir(exist_ok=True)
    browser.save_screenshot(str(SCREENSHOT))

    # Document text is text: the <script> of the garden notes is shown, never run.
    answer = ask("What does the label on the garden shed read?")
    assert "<script>alert(1)</script>" in answer.find_element(By.CSS_SELECTOR, ".card").text
    assert "Garden <b>notes</b>" in browser.find_element(By.ID, "sources").text
    assert browser.execute_script("return document.scripts.length") == 1
    assert not browser.find_elements(By.CSS_SELECTOR, "#log script, #sources b, #log b")
    with pytest.raises(NoAlertPresentException):
        browser.switch_to.alert.text

    # Nothing came from the network but the server; no errors in the console.
    resources = browser.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    assert resources and all(name.startswith(server) for name in resources), resources
    severe = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
    assert not severe, severe

    # Readable at phone width: nothing wider than the window.
    browser.set_window_size(390, 844)
    time.sleep(0.5)
    width = browser.execute_script("return [document.documentElement.scrollWidth, window.innerWidth]")
    assert width[0] <= width[1], width
