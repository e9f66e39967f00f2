"""Servers as separate processes. Nothing acknowledged is lost: the server is killed (SIGKILL) five times while
several clients write events, retrying whatever got no answer with the same eventIds; afterwards every event is in
the store exactly once. And eight server processes writing one SQLite file at once never fail a client."""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time

import httpx

from bert4rec.serving.recommender import Recommender
from bert4rec.store import EventStore, MovieRecord, connect, migrate

KEY = "crash-test-key-" + "c" * 20
CLIENTS, BATCH = 4, 5


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch(model_dir, url_db: str, port: int) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "bert4rec.cli", "serve", str(model_dir), "--db", url_db,
                             "--port", str(port), "--threads", "1"],
                            env=os.environ | {"BERT4REC_API_KEYS": KEY}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


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
