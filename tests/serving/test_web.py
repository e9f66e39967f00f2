"""The web page end to end in headless Chromium (Debian's chromium + chromedriver, driven by Selenium).

.ci/run installs the browser; the screenshot is kept in artifacts/web.png.
"""

from __future__ import annotations

import shutil
import socket
import threading
import time
from pathlib import Path

import pytest
import uvicorn
from conftest import REPO

from bert4rec.serving.access import Keys
from bert4rec.serving.app import create_app
from bert4rec.serving.recommender import Recommender
from bert4rec.store import EventStore, MovieRecord, connect, migrate

ARTIFACTS = REPO / "artifacts"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


@pytest.fixture(scope="module")
def server_url(tiny_model_dir):
    yield from running_server(tiny_model_dir)


@pytest.fixture(scope="module")
def rating_aware_url(tiny_aware_dir):
    yield from running_server(tiny_aware_dir)


@pytest.fixture(scope="module")
def store_server(tiny_model_dir, tmp_path_factory):
    """A server with an empty SQLite event store that knows the model's movies, writes needing KEY."""
    db = tmp_path_factory.mktemp("store") / "events.db"
    migrate(connect(db, create=True))
    store = EventStore.open(db)
    recommender = Recommender.load(tiny_model_dir)
    movies = recommender.catalog.movies
    store.add_movies(MovieRecord(int(i), str(t), None, str(g))
                     for i, t, g in zip(movies["item_id"], movies["title"], movies["genres"], strict=True))
    for url in running_server(tiny_model_dir, create_app(recommender, store=store, keys=Keys(write=(KEY,)))):
        yield url, store


KEY = "web-test-key-" + "k" * 20


def running_server(model_dir, app=None):
    # The server is handed a socket already bound to a free port: no window in which another process can take it.
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    app = app or create_app(Recommender.load(model_dir))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not server.started and time.time() < deadline:
        time.sleep(0.05)
    assert server.started, "server did not start"
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)
    sock.close()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    if not Path(CHROMIUM).exists() or not Path(CHROMEDRIVER).exists():
        pytest.fail("the browser test needs Debian's chromium and chromium-driver (apt-get install chromium "
                    "chromium-driver); .ci/run installs them")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--window-size=1280,900",
                 f"--user-data-dir={tmp_path_factory.mktemp('chromium')}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


def add_movie(browser, wait, query: str, expected_title: str) -> None:
    from selenium.webdriver.common.by import By

    box = browser.find_element(By.ID, "search")
    box.clear()
    box.send_keys(query)
    def pick(d) -> bool:
        for option in d.find_elements(By.CSS_SELECTOR, "#suggestions li"):
            if expected_title in option.text:
                option.click()
                return True
        return False

    wait.until(pick)
    wait.until(lambda d: any(expected_title in li.text for li in d.find_elements(By.CSS_SELECTOR, "#watched li")))


def test_search_add_three_and_get_recommendations(server_url, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, 20)
    browser.get(server_url)
    assert browser.title.startswith("bert4rec")
    wait.until(lambda d: "Most popular" in d.find_element(By.ID, "status").text)  # cold start shows popular movies
    assert not browser.find_element(By.ID, "liked-label").is_displayed()  # the model is not rating-aware
    add_movie(browser, wait, "toy story", "Toy Story (1995)")
    add_movie(browser, wait, "matrix", "Matrix, The (1999)")
    add_movie(browser, wait, "heat", "Heat (1995)")
    wait.until(lambda d: "Based on 3 movies" in d.find_element(By.ID, "status").text)
    items = browser.find_elements(By.CSS_SELECTOR, "#recommendations li")
    assert len(items) == 10
    recommended = {int(li.get_attribute("data-movie-id")) for li in items}
    assert recommended.isdisjoint({1, 2571, 6}), "watched movies are never recommended"
    assert all("because you watched" in li.text for li in items)
    ARTIFACTS.mkdir(exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / "web.png"))
    assert (ARTIFACTS / "web.png").stat().st_size > 10_000
    # removing a movie updates the recommendations
    browser.find_element(By.CSS_SELECTOR, "#watched li button.remove").click()
    wait.until(lambda d: "Based on 2 movies" in d.find_element(By.ID, "status").text)


def test_liked_checkbox_with_a_rating_aware_model(rating_aware_url, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, 20)
    browser.get(rating_aware_url)
    wait.until(lambda d: d.find_element(By.ID, "liked-label").is_displayed())
    add_movie(browser, wait, "toy story", "Toy Story (1995)")
    wait.until(lambda d: "Based on 1 movie" in d.find_element(By.ID, "status").text)

    def scores(d):  # read in one script call: the list may be replaced between element look-ups
        return d.execute_script("return [...document.querySelectorAll('#recommendations .score')]"
                                ".map((e) => e.textContent)")

    before = scores(browser)
    browser.find_element(By.ID, "liked").click()
    wait.until(lambda d: scores(d) and scores(d) != before)  # asked for a liked movie: the model answers anew


def test_a_visitor_recorded_as_a_user_of_the_store(store_server, browser):
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    url, store = store_server
    browser.get(url)
    # In store mode every answer redraws the watched list from the server: an element read a moment ago can be gone.
    wait = WebDriverWait(browser, 30, ignored_exceptions=(StaleElementReferenceException,))
    wait.until(lambda d: d.find_element(By.ID, "account").is_displayed())
    browser.find_element(By.ID, "user-id").send_keys("4242")
    browser.find_element(By.ID, "api-key").send_keys(KEY)
    browser.find_element(By.ID, "sign-in").click()
    wait.until(lambda d: "Most popular" in d.find_element(By.ID, "status").text)  # nothing stored yet
    add_movie(browser, wait, "toy story", "Toy Story (1995)")
    add_movie(browser, wait, "matrix", "Matrix, The (1999)")
    wait.until(lambda d: d.find_element(By.ID, "status").text.startswith("Based on 2 movies"))
    assert [e["movieId"] for e in store.user_events(4242)] == [2571, 1]  # newest first
    browser.refresh()  # the session keeps the user: the watched list comes back from the store
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#watched li")) == 2)
    browser.execute_script("sessionStorage.setItem('bert4rec-key', 'wrong-key-wrong-key-wrong')")
    browser.refresh()
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#watched li")) == 2)
    box = browser.find_element(By.ID, "search")
    box.send_keys("heat")
    def click_first_suggestion(d) -> bool:
        options = d.find_elements(By.CSS_SELECTOR, "#suggestions li")
        if options:
            options[0].click()
        return bool(options)

    wait.until(click_first_suggestion)
    wait.until(lambda d: "may not write" in d.find_element(By.ID, "status").text)
    assert len(store.user_events(4242)) == 2
