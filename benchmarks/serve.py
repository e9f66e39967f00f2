"""Load test of `bert4rec serve` on 127.0.0.1: latency and throughput at 1, 16 and 64 concurrent clients; or, with
--swap, latency and errors while the model is replaced under load.

    .venv/bin/python benchmarks/serve.py MODEL_DIR [--clients 1 16 64] [--requests 3000] [--max-seconds 60]
        [--repeats 3]
    .venv/bin/python benchmarks/serve.py MODEL_DIR --swap 3 [--clients 16] [--repeats 3]

Starts the server in its own process on a free loopback port, then, per concurrency level, runs that many asyncio
aiohttp clients which POST /recommendations with real histories (the most recent 50 movies of random users from the
model's dataset, k = 10) until the level's request count or time cap is reached. The levels run --repeats times in
turn (1, 16, 64, 1, 16, 64, ...), so that a host that slows down mid-run slows every level alike. Reports p50/p99
latency, requests/s and errors of each run and their min / median / max per level, and writes
benchmarks/results/serve.json. Target: p99 ≤ 50 ms at 16 clients with zero errors on an
ML-1M model. Client and server share this machine's cores.

--swap N serves a `current` symlink to one of two copies of MODEL_DIR and, while the clients recommend for
--max-seconds, flips it to the other copy and calls POST /admin/reload N times, evenly spaced. Reports each run's
errors, p50 / p99 / max latency, the slowest request that was under way during a swap, and how long each reload
took; writes benchmarks/results/serve-swap.json. Target: zero errors and no request slower than 200 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import httpx
import numpy as np
import pandas as pd
from repeats import summarize

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "results/serve.json"
ADMIN_KEY = "benchmark-admin-key-" + "x" * 16


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def histories(model_dir: Path, count: int, length: int, seed: int = 0) -> list[list[int]]:
    table = pd.read_parquet(model_dir / "dataset" / "interactions.parquet", columns=["user_id", "item_id"])
    grouped = table.groupby("user_id", sort=False)["item_id"].apply(lambda s: s.to_numpy()[-length:])
    rng = np.random.default_rng(seed)
    return [grouped.iloc[i].tolist() for i in rng.integers(0, len(grouped), count)]


async def level(url: str, clients: int, bodies: list[dict], max_requests: int, max_seconds: float) -> dict:
    latencies: list[float] = []
    errors = 0
    sent = 0
    deadline = time.perf_counter() + max_seconds

    async def client(http: aiohttp.ClientSession) -> None:
        nonlocal errors, sent
        while sent < max_requests and time.perf_counter() < deadline:
            body = bodies[sent % len(bodies)]
            sent += 1
            started = time.perf_counter()
            try:
                async with http.post(f"{url}/recommendations", json=body) as response:
                    payload = await response.json()
                    ok = response.status == 200 and len(payload["items"]) == body["k"]
            except (aiohttp.ClientError, asyncio.TimeoutError):
                ok = False
            latencies.append(time.perf_counter() - started)
            errors += not ok

    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=30)) as http:
        async with http.post(f"{url}/recommendations", json=bodies[0]) as warm_up:
            await warm_up.read()
        started = time.perf_counter()
        await asyncio.gather(*(client(http) for _ in range(clients)))
        elapsed = time.perf_counter() - started
    ms = 1000 * np.array(latencies)
    return {"clients": clients, "requests": len(latencies), "errors": errors, "seconds": elapsed,
            "requests_per_s": len(latencies) / elapsed, "p50_ms": float(np.percentile(ms, 50)),
            "p99_ms": float(np.percentile(ms, 99)), "max_ms": float(ms.max())}


async def swapping(url: str, clients: int, bodies: list[dict], seconds: float, swaps: int, flip) -> dict:
    """Clients recommending for ``seconds`` while the model is swapped ``swaps`` times; each request's start and
    end are kept, to find the ones a swap overlapped."""
    spans: list[tuple[float, float, bool]] = []
    reloads: list[tuple[float, float, int]] = []
    stop = time.perf_counter() + seconds

    async def client(http: aiohttp.ClientSession) -> None:
        while time.perf_counter() < stop:
            body = bodies[len(spans) % len(bodies)]
            started = time.perf_counter()
            try:
                async with http.post(f"{url}/recommendations", json=body) as response:
                    ok = response.status == 200 and len((await response.json())["items"]) == body["k"]
            except (aiohttp.ClientError, asyncio.TimeoutError):
                ok = False
            spans.append((started, time.perf_counter(), ok))

    async def swapper(http: aiohttp.ClientSession) -> None:
        for n in range(swaps):
            await asyncio.sleep(max(0.0, stop - seconds + (n + 1) * seconds / (swaps + 1) - time.perf_counter()))
            flip(n)
            started = time.perf_counter()
            async with http.post(f"{url}/admin/reload", headers={"Authorization": f"Bearer {ADMIN_KEY}"}) as reply:
                await reply.read()
            reloads.append((started, time.perf_counter(), reply.status))

    connector = aiohttp.TCPConnector(limit=clients + 1)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=30)) as http:
        await asyncio.gather(swapper(http), *(client(http) for _ in range(clients)))
    ms = 1000 * np.array([end - start for start, end, _ in spans])
    during = [1000 * (end - start) for start, end, _ in spans
              if any(start < r_end and end > r_start for r_start, r_end, _ in reloads)]
    return {"clients": clients, "requests": len(spans), "errors": sum(not ok for *_, ok in spans),
            "swaps": len(reloads), "reload_statuses": [status for *_, status in reloads],
            "reload_s": [end - start for start, end, _ in reloads], "p50_ms": float(np.percentile(ms, 50)),
            "p99_ms": float(np.percentile(ms, 99)), "max_ms": float(ms.max()),
            "max_during_swap_ms": max(during, default=0.0), "requests_during_swaps": len(during)}


def swap_benchmark(args, bodies: list[dict]) -> dict:
    with tempfile.TemporaryDirectory(prefix="bert4rec-swap-") as folder:
        copies = [Path(folder) / name for name in ("a", "b")]
        for copy in copies:
            shutil.copytree(args.model_dir, copy)
        current = Path(folder) / "current"
        current.symlink_to(copies[0])

        def flip(n: int) -> None:
            link = Path(folder) / "current.new"
            link.symlink_to(copies[(n + 1) % 2])
            os.replace(link, current)

        with running_server(current, args.threads, {"BERT4REC_ADMIN_KEYS": ADMIN_KEY}) as server:
            url = server.url
            runs = []
            for _ in range(args.repeats):
                for clients in args.clients:
                    flip(-1)  # back to the first copy, reloaded by the first swap's flip to the other
                    row = asyncio.run(swapping(url, clients, bodies, args.max_seconds, args.swap, flip))
                    runs.append(row)
                    print(f"{clients:3d} clients, {row['swaps']} swaps: errors {row['errors']}/{row['requests']}  "
                          f"p99 {row['p99_ms']:6.1f} ms  max {row['max_ms']:6.1f} ms  slowest during a swap "
                          f"{row['max_during_swap_ms']:6.1f} ms  reloads {[round(s, 2) for s in row['reload_s']]} s",
                          flush=True)
    return {"swaps_per_run": args.swap, "seconds_per_run": args.max_seconds, "errors": sum(r["errors"] for r in runs),
            **summarize(runs, ("p50_ms", "p99_ms", "max_ms", "max_during_swap_ms")), "runs": runs}


def level_summary(clients: int, rows: list[dict]) -> dict:
    """One level's runs, and the min / median / max of each figure over them."""
    return {"clients": clients, "errors": sum(row["errors"] for row in rows),
            "requests": sum(row["requests"] for row in rows),
            **summarize(rows, ("requests_per_s", "p50_ms", "p99_ms", "max_ms")), "runs": rows}


def wait_healthy(url: str, process: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if process.poll() is not None:
            sys.exit(f"server exited with status {process.returncode}")
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.2)
    sys.exit("server did not become healthy")


@dataclass(frozen=True)
class Served:
    url: str
    pid: int  # the `bert4rec serve` process (with --workers, the parent of the workers)


@contextlib.contextmanager
def running_server(model_dir: Path, threads: int, env: dict | None = None, options: tuple = ()) -> Iterator[Served]:
    """`bert4rec serve MODEL_DIR [options]` in its own process on a free loopback port, until the block ends."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([sys.executable, "-m", "bert4rec.cli", "serve", str(model_dir), "--port", str(port),
                               "--threads", str(threads), *options], env=os.environ | (env or {}),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_healthy(url, server)
        yield Served(url, server.pid)
    finally:
        server.terminate()
        server.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("--clients", type=int, nargs="+", help="concurrency levels (default 1 16 64; 16 with --swap)")
    parser.add_argument("--requests", type=int, default=3000, help="requests per concurrency level")
    parser.add_argument("--max-seconds", type=float, default=60, help="time cap per concurrency level")
    parser.add_argument("--history", type=int, default=50, help="movies per request history")
    parser.add_argument("--threads", type=int, default=1, help="model threads of the server (serve --threads)")
    parser.add_argument("--repeats", type=int, default=3, help="runs of every level, taken in turn")
    parser.add_argument("--swap", type=int, default=0, help="swap the model this many times in each run")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    args.clients = args.clients or ([16] if args.swap else [1, 16, 64])

    bodies = [{"history": [{"movieId": m} for m in h], "k": 10}
              for h in histories(args.model_dir, 500, args.history)]
    machine = f"{platform.machine()}, {os.cpu_count()} cores (client and server share them)"
    if args.swap:
        report = {"machine": machine, "server_threads": args.threads, "repeats": args.repeats,
                  "model_dir": str(args.model_dir), "history_length": args.history, "k": 10,
                  **swap_benchmark(args, bodies)}
        out = args.out if args.out != DEFAULT_OUT else HERE / "results/serve-swap.json"
        out.write_text(json.dumps(report, indent=2))
        print(f"written to {out}")
        return
    with running_server(args.model_dir, args.threads) as server:
        url = server.url
        runs = {clients: [] for clients in args.clients}
        for _ in range(args.repeats):
            for clients in args.clients:
                row = asyncio.run(level(url, clients, bodies, args.requests, args.max_seconds))
                runs[clients].append(row)
                print(f"{clients:3d} clients: {row['requests_per_s']:7.1f} req/s  p50 {row['p50_ms']:6.1f} ms  "
                      f"p99 {row['p99_ms']:6.1f} ms  errors {row['errors']}/{row['requests']}", flush=True)
    report = {"machine": machine, "server_threads": args.threads, "repeats": args.repeats,
              "model_dir": str(args.model_dir), "history_length": args.history, "k": 10,
              "levels": [level_summary(clients, rows) for clients, rows in runs.items()]}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
