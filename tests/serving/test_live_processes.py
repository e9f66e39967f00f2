"""Nothing acknowledged is lost: the server is killed (SIGKILL) five times while several clients write events,
retrying whatever got no answer with the same eventIds; afterwards every event is in the store exactly once."""

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


def start(model_dir, url_db: str, port: int) -> subprocess.Popen:
    server = subprocess.Popen([sys.executable, "-m", "bert4rec.cli", "serve", str(model_dir), "--db", url_db,
                               "--port", str(port), "--threads", "1"],
                              env=os.environ | {"BERT4REC_API_KEYS": KEY}, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline:
        assert server.poll() is None, "the server exited"
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health/ready", timeout=1).status_code == 200:
                return server
        except httpx.HTTPError:
            time.sleep(0.1)
    raise AssertionError("the server did not start")


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
    migrate(connect(store_url, create=True))
    store = EventStore.open(store_url)
    catalog = Recommender.load(untrained_model_dir).catalog.movies
    store.add_movies(MovieRecord(int(i), str(t)) for i, t in zip(catalog["item_id"], catalog["title"], strict=True))
    movies = catalog["item_id"].astype(int).tolist()
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
