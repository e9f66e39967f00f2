"""Servers as separate processes. Nothing acknowledged is lost: the server is killed (SIGKILL) five times while
several clients write events, retrying whatever got no answer with the same eventIds; afterwards every event is in
the store exactly once. Eight server processes writing one SQLite file at once never fail a client. And the workers
of one server (--workers) see each other's events, added movies and reloaded models, and count requests together."""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

import httpx
import torch
from prometheus_client.parser import text_string_to_metric_families

from bert4rec.model.config import Bert4RecConfig
from bert4rec.model.modeling import Bert4Rec
from bert4rec.serving.recommender import Recommender
from bert4rec.store import EventStore, MovieRecord, connect, migrate

KEY = "crash-test-key-" + "c" * 20
ADMIN = "admin-test-key-" + "a" * 20
CLIENTS, BATCH = 4, 5


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch(model_dir, url_db: str, port: int, *options: str, stderr=subprocess.DEVNULL,
           **environment: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "bert4rec.cli", "serve", str(model_dir), "--db", url_db,
                             "--port", str(port), "--threads", "1", *options],
                            env=os.environ | {"BERT4REC_API_KEYS": KEY} | environment, stdout=subprocess.DEVNULL,
                            stderr=stderr)


def wait_ready(server: subprocess.Popen, port: int) -> subprocess.Popen:
    deadline = time.time() + 180
    while time.time() < deadline:
        assert server.poll() is None, "the server exited"
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health/ready", timeout=1).status_code == 200:
                return server
        except httpx.HTTPError:
            time.sleep(0.1)
    raise AssertionError("the server did not start")


def start(model_dir, url_db: str, port: int) -> subprocess.Popen:
    return wait_ready(launch(model_dir, url_db, port), port)


def new_store(model_dir, url_db: str) -> tuple[EventStore, list[int]]:
    """A migrated store holding the model's catalogue, and its movie ids."""
    migrate(connect(url_db, create=True))
    store = EventStore.open(url_db)
    catalog = Recommender.load(model_dir).catalog.movies
    store.add_movies(MovieRecord(int(i), str(t)) for i, t in zip(catalog["item_id"], catalog["title"], strict=True))
    return store, catalog["item_id"].astype(int).tolist()


def client(number: int, port: int, movies: list[int], sent: list, acknowledged: list,
           done: threading.Event) -> None:
    """Send batches until ``done``; a batch without an answer is sent again, unchanged, until one comes."""
    rng = random.Random(number)
    with httpx.Client(timeout=5, headers={"Authorization": f"Bearer {KEY}"}) as http:
        batch = 0
        while not done.is_set():
            events = [{"userId": 1000 + number, "movieId": rng.choice(movies), "eventId": f"{number}-{batch}-{i}"}
                      for i in range(BATCH)]
            sent.extend(e["eventId"] for e in events)
            while True:
                try:
                    response = http.post(f"http://127.0.0.1:{port}/events", json=events)
                except httpx.HTTPError:
                    time.sleep(0.05)  # the server is down: try again
                    continue
                assert response.status_code == 200, response.text  # never a 500, even around a crash
                acknowledged.extend(e["eventId"] for e in events)
                break
            batch += 1
            time.sleep(0.01)


def test_five_kills_during_writes_lose_nothing_acknowledged(untrained_model_dir, store_url):
    store, movies = new_store(untrained_model_dir, store_url)
    port = free_port()
    server = start(untrained_model_dir, store_url, port)
    sent: list[str] = []
    acknowledged: list[str] = []
    done = threading.Event()
    threads = [threading.Thread(target=client, args=(n, port, movies, sent, acknowledged, done))
               for n in range(CLIENTS)]
    for thread in threads:
        thread.start()
    answered_at_kill = []
    try:
        for _ in range(5):
            time.sleep(random.uniform(0.5, 1.5))
            answered_at_kill.append(len(acknowledged))
            server.send_signal(signal.SIGKILL)
            server.wait(10)
            server = start(untrained_model_dir, store_url, port)
        time.sleep(0.5)
        done.set()
        for thread in threads:
            thread.join(60)
    finally:
        done.set()
        server.send_signal(signal.SIGKILL)
        server.wait(10)
    assert not any(thread.is_alive() for thread in threads)
    # Writes were answered between every two kills: each kill landed in a stream of writes.
    assert all(a < b for a, b in zip([0, *answered_at_kill], answered_at_kill, strict=False))
    assert sorted(acknowledged) == sorted(set(sent))  # every batch was answered in the end, once
    stored = [e["eventId"] for n in range(CLIENTS) for e in store.user_events(1000 + n, limit=10**6)]
    assert sorted(stored) == sorted(set(sent))  # each exactly once: a retry of a stored batch was a duplicate


def test_eight_server_processes_writing_one_sqlite_file_never_fail_a_client(untrained_model_dir, tmp_path):
    # SQLite lets one process write at a time; the other seven must wait their turn inside, never answer a client
    # with a 500 or "database is locked".
    url_db = f"sqlite:///{tmp_path / 'events.db'}"
    store, movies = new_store(untrained_model_dir, url_db)
    ports = [free_port() for _ in range(8)]
    servers = [launch(untrained_model_dir, url_db, port) for port in ports]
    statuses: list[int] = []
    start_together = threading.Barrier(len(ports))

    def write(number: int, port: int) -> None:
        with httpx.Client(timeout=60, headers={"Authorization": f"Bearer {KEY}"}) as http:
            start_together.wait()
            for batch in range(20):
                events = [{"userId": 2000 + number, "movieId": movies[(batch + i) % len(movies)],
                           "eventId": f"{batch}-{i}"} for i in range(25)]
                statuses.append(http.post(f"http://127.0.0.1:{port}/events", json=events).status_code)

    try:
        for server, port in zip(servers, ports, strict=True):
            wait_ready(server, port)
        threads = [threading.Thread(target=write, args=(n, port)) for n, port in enumerate(ports)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
    finally:
        for server in servers:
            server.send_signal(signal.SIGKILL)
            server.wait(10)
    assert statuses == [200] * 8 * 20
    assert store.counts()["events"] == 8 * 20 * 25


def connection_to_each_worker(port: int, workers: int) -> tuple[dict[int, httpx.Client], int]:
    """One kept-alive connection to each worker, by the process id its /health names (a connection stays with the
    worker that accepted it), and how many times /health was asked."""
    found: dict[int, httpx.Client] = {}
    for asked in range(1, 301):
        http = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30,
                            headers={"Authorization": f"Bearer {KEY}"})
        process = http.get("/health").json()["process"]
        if process in found:
            http.close()
        else:
            found[process] = http
        if len(found) == workers:
            return found, asked
    raise AssertionError(f"{len(found)} of {workers} workers answered")


def test_the_workers_of_one_server_share_events_added_movies_reloads_and_metrics(untrained_model_dir, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for folder in (a, b):
        shutil.copytree(untrained_model_dir, folder)
    torch.manual_seed(1)
    Bert4Rec(Bert4RecConfig.load(b)).save(b)  # other weights, the same catalogue
    current = tmp_path / "current"
    current.symlink_to(a)
    url_db = f"sqlite:///{tmp_path / 'events.db'}"
    _, movies = new_store(a, url_db)
    port, scratch, log = free_port(), tmp_path / "scratch", tmp_path / "server.log"
    scratch.mkdir()
    with open(log, "w") as stderr:
        server = launch(current, url_db, port, "--workers", "2", stderr=stderr, TMPDIR=str(scratch),
                        BERT4REC_ADMIN_KEYS=ADMIN)
    try:
        wait_ready(server, port)
        connections, health_asked = connection_to_each_worker(port, 2)
        first, second = connections.items()

        def on(worker, method: str, path: str, **options) -> httpx.Response:
            nonlocal health_asked
            process, http = worker
            assert http.get("/health").json()["process"] == process  # still the same worker
            health_asked += 1 + (path == "/health")
            return http.request(method, path, **options)

        # An event acknowledged by one worker shapes the next recommendation of the other.
        watched = movies[:3]
        events = [{"userId": 5000, "movieId": m, "timestamp": 1_700_000_000 + i} for i, m in enumerate(watched)]
        assert on(first, "POST", "/events", json=events).json() == {"stored": 3, "duplicates": 0}
        found = on(second, "GET", "/users/5000/recommendations").json()
        assert found["fallback"] is None
        assert [m["movieId"] for m in found["history"]] == watched
        assert not set(watched) & {m["movieId"] for m in found["items"]}

        # A movie added through one is found by the other, by id and by title.
        added = {"movieId": 10**9, "title": "Workers Together (2026)", "genres": ["Drama"]}
        assert on(first, "POST", "/movies", json=added).status_code == 201
        assert on(second, "GET", f"/movies/{10**9}").json()["recommendable"] is False
        assert [m["movieId"] for m in on(second, "GET", "/movies", params={"q": "workers together"}).json()][:1] \
            == [10**9]

        # A model made live on one goes live on the other within a second or so.
        before = on(second, "GET", "/health").json()["model"]["version"]
        point = current.with_name("current.new")
        point.symlink_to(b)
        os.replace(point, current)
        reloaded = on(first, "POST", "/admin/reload", headers={"Authorization": f"Bearer {ADMIN}"})
        assert reloaded.status_code == 200, reloaded.text
        after = reloaded.json()["model"]["version"]
        assert after != before
        deadline = time.time() + 4  # well within the connection's keep-alive
        while on(second, "GET", "/health").json()["model"]["version"] != after:
            assert time.time() < deadline, "the other worker kept the old model"
            time.sleep(0.2)

        # /metrics counts the requests of both workers, whichever answers it.
        for worker in (first, second):
            families = text_string_to_metric_families(on(worker, "GET", "/metrics").text)
            counted = sum(sample.value for family in families if family.name == "bert4rec_requests"
                          for sample in family.samples if sample.name == "bert4rec_requests_total"
                          and sample.labels["route"] == "/health")
            assert counted == health_asked
        for _, http in (first, second):
            http.close()
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(30)
    assert server.returncode == 0
    assert "Traceback" not in log.read_text()
    assert list(scratch.iterdir()) == []  # the workers' shared folder went with them
