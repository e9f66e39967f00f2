"""Load test of `bert4rec serve` on 127.0.0.1: latency and throughput at 1, 16 and 64 concurrent clients.

    .venv/bin/python benchmarks/serve.py MODEL_DIR [--clients 1 16 64] [--requests 3000] [--max-seconds 60]
        [--repeats 3]

Starts the server in its own process on a free loopback port, then, per concurrency level, runs that many asyncio
aiohttp clients which POST /recommendations with real histories (the most recent 50 movies of random users from the
model's dataset, k = 10) until the level's request count or time cap is reached. The levels run --repeats times in
turn (1, 16, 64, 1, 16, 64, ...), so that a host that slows down mid-run slows every level alike. Reports p50/p99
latency, requests/s and errors of each run and their min / median / max per level, and writes
benchmarks/results/serve.json. Target: p99 ≤ 50 ms at 16 clients with zero errors on an
ML-1M model. Client and server share this machine's cores.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import httpx
import numpy as np
import pandas as pd
from repeats import summarize

HERE = Path(__file__).resolve().parent


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument("--requests", type=int, default=3000, help="requests per concurrency level")
    parser.add_argument("--max-seconds", type=float, default=60, help="time cap per concurrency level")
    parser.add_argument("--history", type=int, default=50, help="movies per request history")
    parser.add_argument("--threads", type=int, default=1, help="model threads of the server (serve --threads)")
    parser.add_argument("--repeats", type=int, default=3, help="runs of every level, taken in turn")
    parser.add_argument("--out", type=Path, default=HERE / "results/serve.json")
    args = parser.parse_args()

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    bodies = [{"history": [{"movieId": m} for m in h], "k": 10}
              for h in histories(args.model_dir, 500, args.history)]
    server = subprocess.Popen([sys.executable, "-m", "bert4rec.cli", "serve", str(args.model_dir), "--port",
                               str(port), "--threads", str(args.threads)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_healthy(url, server)
        runs = {clients: [] for clients in args.clients}
        for _ in range(args.repeats):
            for clients in args.clients:
                row = asyncio.run(level(url, clients, bodies, args.requests, args.max_seconds))
                runs[clients].append(row)
                print(f"{clients:3d} clients: {row['requests_per_s']:7.1f} req/s  p50 {row['p50_ms']:6.1f} ms  "
                      f"p99 {row['p99_ms']:6.1f} ms  errors {row['errors']}/{row['requests']}", flush=True)
    finally:
        server.terminate()
        server.wait(10)
    report = {"machine": f"{platform.machine()}, {os.cpu_count()} cores (client and server share them)",
              "server_threads": args.threads, "repeats": args.repeats,
              "model_dir": str(args.model_dir), "history_length": args.history, "k": 10,
              "levels": [level_summary(clients, rows) for clients, rows in runs.items()]}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
