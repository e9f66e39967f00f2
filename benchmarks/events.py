"""The event store under load, through `bert4rec serve MODEL --db`: ingest throughput, and recommendation latency
while events keep arriving, on SQLite and on PostgreSQL.

    .venv/bin/python benchmarks/events.py MODEL_DIR [--backends sqlite postgresql] [--repeats 3] [--workers N]
        [--against GIT_REF]

For each backend: a new store (SQLite in a temporary folder; PostgreSQL on a server started for the run, as the
tests do: tests/postgres.py), the model's dataset imported into it, then the server in its own process on a free
loopback port, with an API key. Each repeat runs, in turn:

1. batched ingest: --batch-clients clients POST /events with 1,000 events per request (new users, unique eventIds);
2. single events: 16 clients POST /events one event per request;
3. recommendations with a writer: 16 clients GET /users/{id}/recommendations (k = 10) for users of the dataset,
   while a writer POSTs single events for the same users at --writer-rate events/s; and, for comparison, the same
   without the writer.

Reports events/s, p50/p99 latency, the server's CPU time per request and errors per run and their min / median /
max, and writes benchmarks/results/events.json. With --against, the server of an earlier commit takes turns with
this checkout's in every repeat, on the same store, and the report adds their ratios: on a machine shared with
other work, what moves both alike cancels out. Targets on the 2-core machine: ≥ 20,000 events/s batched, ≥ 1,000
single events/s, zero errors; recommendation p99 ≤ 50 ms at 16 clients with the writer running. Client and server
share the cores.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import numpy as np
import pandas as pd
import psutil
from repeats import spread, summarize
from serve import Served, running_server

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
from postgres import PostgresServer  # noqa: E402  (the tests' PostgreSQL helper)

KEY = "benchmark-key-" + "x" * 20
AUTH = {"Authorization": f"Bearer {KEY}"}
FIRST_NEW_USER = 10**9


class Load:
    """Counts and latencies of one closed-loop phase."""

    def __init__(self):
        self.latencies: list[float] = []
        self.errors = 0
        self.items = 0

    async def call(self, http: aiohttp.ClientSession, method: str, url: str, items: int, **kwargs) -> None:
        started = time.perf_counter()
        try:
            async with http.request(method, url, **kwargs) as response:
                await response.read()
                ok = response.status == 200
        except (aiohttp.ClientError, asyncio.TimeoutError):
            ok = False
        self.latencies.append(time.perf_counter() - started)
        self.errors += not ok
        self.items += items * ok

    def row(self, seconds: float, unit: str) -> dict:
        ms = 1000 * np.array(self.latencies or [np.nan])
        return {"requests": len(self.latencies), "errors": self.errors, "seconds": seconds,
                f"{unit}_per_s": self.items / seconds, "p50_ms": float(np.percentile(ms, 50)),
                "p99_ms": float(np.percentile(ms, 99))}


async def closed_loop(clients: int, requests: int, send) -> float:
    """``clients`` loops calling ``send(i)`` until ``requests`` calls were made; returns the seconds taken."""
    counter = itertools.count()

    async def client() -> None:
        while (i := next(counter)) < requests:
            await send(i)

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    return time.perf_counter() - started


def session(clients: int) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=clients + 4),
                                 timeout=aiohttp.ClientTimeout(total=60))


# A phase draws its movies and users from its repeat's seed; ``space`` keeps the ids it creates (new users, eventIds)
# apart from those of another server given the same repeat, so that both do the same work.


async def batched_ingest(url: str, movies: np.ndarray, clients: int, batches: int, repeat: int, space: int = 0
                         ) -> dict:
    load, rng = Load(), np.random.default_rng(repeat)

    async def send(i: int) -> None:
        user = FIRST_NEW_USER + (repeat + 100 * space) * 10**6 + i
        body = [{"userId": user, "movieId": int(m), "rating": 4.0, "eventId": f"b{space}.{repeat}-{i}-{j}"}
                for j, m in enumerate(rng.choice(movies, 1000))]
        await load.call(http, "POST", f"{url}/events", 1000, json=body, headers=AUTH)

    async with session(clients) as http:
        seconds = await closed_loop(clients, batches, send)
    return load.row(seconds, "events")


async def single_events(url: str, movies: np.ndarray, clients: int, requests: int, repeat: int, space: int = 0
                        ) -> dict:
    load, rng = Load(), np.random.default_rng(100 + repeat)
    picks = rng.choice(movies, requests)

    async def send(i: int) -> None:
        body = {"userId": FIRST_NEW_USER + 5 * 10**8 + (repeat + 100 * space) * 10**6 + i % 500,
                "movieId": int(picks[i]), "eventId": f"s{space}.{repeat}-{i}"}
        await load.call(http, "POST", f"{url}/events", 1, json=body, headers=AUTH)

    async with session(clients) as http:
        seconds = await closed_loop(clients, requests, send)
    return load.row(seconds, "events")


async def recommendations(url: str, users: np.ndarray, movies: np.ndarray, clients: int, requests: int,
                          writer_rate: float, repeat: int, space: int = 0) -> dict:
    reads, writes, rng = Load(), Load(), np.random.default_rng(200 + repeat)
    picked = rng.choice(users, requests)
    done = asyncio.Event()

    async def send(i: int) -> None:
        await reads.call(http, "GET", f"{url}/users/{int(picked[i])}/recommendations", 1, params={"k": "10"})

    async def writer() -> None:
        # Open loop: one event every 1/rate seconds whatever the server's pace, as real users would send them.
        i, started, pending = 0, time.perf_counter(), set()
        while not done.is_set():
            body = {"userId": int(rng.choice(users)), "movieId": int(rng.choice(movies)), "rating": 4.0,
                    "eventId": f"w{space}.{repeat}-{writer_rate}-{i}"}
            task = asyncio.ensure_future(writes.call(http, "POST", f"{url}/events", 1, json=body, headers=AUTH))
            pending.add(task)
            task.add_done_callback(pending.discard)
            i += 1
            await asyncio.sleep(max(0.0, started + i / writer_rate - time.perf_counter()))
        await asyncio.gather(*pending)

    async with session(clients + 16) as http:
        task = asyncio.ensure_future(writer()) if writer_rate > 0 else None
        seconds = await closed_loop(clients, requests, send)
        done.set()
        if task is not None:
            await task
    row = reads.row(seconds, "requests")
    row |= {"writer_events_per_s": writes.items / seconds, "writer_errors": writes.errors}
    return row


def server_cpu_seconds(pid: int) -> float:
    """CPU seconds (user and system) the server has used so far: its process and every worker's."""
    root = psutil.Process(pid)
    return sum(sum(process.cpu_times()[:2]) for process in [root, *root.children(recursive=True)])


def measured(server: Served, phase) -> dict:
    """Run a phase (a coroutine) and add the server's CPU time per request to its row: on a machine shared with
    other work the rates move from run to run, what a request costs the server much less. With the writer the
    writes' cost is in it too."""
    before = server_cpu_seconds(server.pid)
    row = asyncio.run(phase)
    row["server_cpu_ms"] = 1000 * (server_cpu_seconds(server.pid) - before) / max(1, row["requests"])
    return row


def prepare_store(backend: str, model_dir: Path, folder: Path) -> tuple[str, PostgresServer | None]:
    server = None
    if backend == "sqlite":
        url = f"sqlite:///{folder / 'events.db'}"
    else:
        server = PostgresServer().start()
        url = server.new_database()
    cli = [sys.executable, "-m", "bert4rec.cli", "db"]
    subprocess.run([*cli, "init", "--db", url], check=True, stdout=subprocess.DEVNULL)
    export = folder / "dataset"
    table = pd.read_parquet(model_dir / "dataset" / "interactions.parquet",
                            columns=["user_id", "item_id", "rating", "timestamp"])
    export.mkdir()
    table.rename(columns={"user_id": "userId", "item_id": "movieId"}).to_parquet(export / "ratings.parquet")
    movies = pd.read_parquet(model_dir / "dataset" / "movies.parquet", columns=["item_id", "title", "genres"])
    movies.rename(columns={"item_id": "movieId"}).to_parquet(export / "movies.parquet")
    started = time.perf_counter()
    subprocess.run([*cli, "import", "--db", url, "--data", str(export), "--quiet"], check=True,
                   stdout=subprocess.DEVNULL)
    print(f"{backend}: imported {len(table):,} events in {time.perf_counter() - started:.1f} s", flush=True)
    return url, server


PHASES = {"batched": "events_per_s", "single": "events_per_s", "recommend_with_writer": "requests_per_s",
          "recommend_alone": "requests_per_s"}  # each phase's rate


def run_phases(server: Served, args, users: np.ndarray, movies: np.ndarray, repeat: int, space: int) -> dict:
    url = server.url
    return {
        "batched": measured(server, batched_ingest(url, movies, args.batch_clients, args.batches, repeat, space)),
        "single": measured(server, single_events(url, movies, 16, args.singles, repeat, space)),
        "recommend_with_writer": measured(server, recommendations(url, users, movies, 16, args.requests,
                                                                  args.writer_rate, repeat, space)),
        "recommend_alone": measured(server, recommendations(url, users, movies, 16, args.requests, 0, repeat,
                                                            space)),
    }


def run_backend(backend: str, args, folder: Path, servers: dict[str, dict]) -> dict[str, dict]:
    """Every repeat of every phase against each server (name -> extra environment), the servers taking turns
    within a repeat, first one then the other, so that both meet the same moments of a shared machine. One store
    for all: the rows of each phase of each server."""
    url_db, pg = prepare_store(backend, args.model_dir, folder)
    table = pd.read_parquet(args.model_dir / "dataset" / "interactions.parquet", columns=["user_id", "item_id"])
    users, movies = table["user_id"].unique(), table["item_id"].unique()
    phases = {name: {phase: [] for phase in PHASES} for name in servers}
    try:
        for repeat in range(args.repeats):
            for name in list(servers)[:: 1 if repeat % 2 == 0 else -1]:
                with running_server(args.model_dir, args.threads, {"BERT4REC_API_KEYS": KEY} | servers[name],
                                    ("--db", url_db, "--workers", str(args.workers))) as server:
                    rows = run_phases(server, args, users, movies, repeat, list(servers).index(name))
                for phase, row in rows.items():
                    phases[name][phase].append(row)
                    print(f"{backend:10s} {name:8s} {phase:22s} {row[PHASES[phase]]:9.1f}/s  p50 "
                          f"{row['p50_ms']:6.1f} ms  p99 {row['p99_ms']:6.1f} ms  server CPU "
                          f"{row['server_cpu_ms']:6.2f} ms/request  errors {row['errors']}/{row['requests']}",
                          flush=True)
    finally:
        if pg is not None:
            pg.stop()
    return phases


def summary(phases: dict[str, list[dict]]) -> dict:
    return {phase: {"errors": sum(r["errors"] for r in rows),
                    **summarize(rows, (PHASES[phase], "p50_ms", "p99_ms", "server_cpu_ms")), "runs": rows}
            for phase, rows in phases.items()}


def ratios(current: dict[str, list[dict]], against: dict[str, list[dict]]) -> dict:
    """Per phase, this checkout's rate and server CPU per request over the other's, repeat by repeat."""
    return {phase: {f"{figure}_ratio": spread([a[figure] / b[figure] for a, b in zip(rows, against[phase],
                                                                                      strict=True)])
                    for figure in (PHASES[phase], "server_cpu_ms")}
            for phase, rows in current.items()}


def source_of(ref: str, folder: Path) -> Path:
    """The package as it was at git ``ref`` of this repository, unpacked into ``folder``: a server to compare."""
    archive = subprocess.run(["git", "-C", str(HERE.parent), "archive", ref, "src"], check=True,
                             capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    return folder / "src"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("--backends", nargs="+", default=["sqlite", "postgresql"], choices=["sqlite", "postgresql"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-clients", type=int, default=4)
    parser.add_argument("--batches", type=int, default=100, help="batches of 1,000 events per repeat")
    parser.add_argument("--singles", type=int, default=5000, help="single-event requests per repeat")
    parser.add_argument("--requests", type=int, default=2000, help="recommendation requests per repeat")
    parser.add_argument("--writer-rate", type=float, default=500, help="events/s the writer adds meanwhile")
    parser.add_argument("--threads", type=int, default=1, help="model threads of the server (serve --threads)")
    parser.add_argument("--workers", type=int, default=1, help="server processes (serve --workers)")
    parser.add_argument("--against", metavar="GIT_REF",
                        help="also run the server as it was at this commit, taking turns with this checkout's, and "
                             "report their ratios (benchmarks/results/events-vs-REF.json)")
    parser.add_argument("--out", type=Path, help="default benchmarks/results/events.json, events-workersN.json or "
                                                 "events-vs-REF.json")
    args = parser.parse_args()
    default = "events.json" if args.workers == 1 else f"events-workers{args.workers}.json"
    args.out = args.out or HERE / "results" / (default if args.against is None else f"events-vs-{args.against}.json")
    report = {"machine": f"{platform.machine()}, {os.cpu_count()} cores (client, server and database share them)",
              "model_dir": str(args.model_dir), "server_threads": args.threads, "server_workers": args.workers,
              "repeats": args.repeats,
              "batch_clients": args.batch_clients, "writer_rate": args.writer_rate, "backends": {}}
    with tempfile.TemporaryDirectory() as source:
        servers = {"current": {}}
        if args.against is not None:
            report["against"] = subprocess.run(["git", "-C", str(HERE.parent), "rev-parse", args.against],
                                               check=True, capture_output=True, text=True).stdout.strip()
            servers["against"] = {"PYTHONPATH": str(source_of(args.against, Path(source)))}
        for backend in args.backends:
            with tempfile.TemporaryDirectory() as folder:
                phases = run_backend(backend, args, Path(folder), servers)
            report["backends"][backend] = (summary(phases["current"]) if args.against is None else
                                           {"ratios": ratios(phases["current"], phases["against"]),
                                            **{name: summary(rows) for name, rows in phases.items()}})
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
