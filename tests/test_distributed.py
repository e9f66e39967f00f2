"""DDP under torchrun with 2 CPU processes (gloo)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest
import torch
from conftest import shared
from test_reliability import pattern_prepared

from bert4rec.recommend import Recommender

MODEL_ARGS = ["--hidden-size", "16", "--layers", "1", "--heads", "2", "--max-len", "16", "--dropout", "0",
              "--precision", "fp32", "--quiet"]


def torchrun(processes: int, *args: str) -> subprocess.CompletedProcess:
    # Loopback only: gloo otherwise picks the interface its hostname resolves to.
    env = os.environ | {"OMP_NUM_THREADS": "1", "GLOO_SOCKET_IFNAME": "lo"}
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    command = [sys.executable, "-m", "torch.distributed.run", "--nnodes=1", "--node-rank=0",
               "--master-addr=127.0.0.1", f"--master-port={port}", f"--nproc-per-node={processes}",
               "-m", "bert4rec.cli", "train", *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)


@pytest.mark.slow
def test_two_processes_train_a_loadable_model(tmp_path):
    out = tmp_path / "model"
    done = torchrun(2, "--data", str(shared("ml-latest-small")), "--out", str(out), "--epochs", "1", *MODEL_ARGS)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("training summary") == 1  # rank 0 alone reports
    recommender = Recommender.load(out)
    assert len(recommender.recommend_user(1, 5).items) == 5
    assert len((out / "history.jsonl").read_text().splitlines()) == 1


@pytest.mark.slow
def test_two_processes_equal_one_process_with_double_batch(tmp_path):
    prepared = pattern_prepared(tmp_path / "prepared")
    two = torchrun(2, "--data", str(prepared), "--out", str(tmp_path / "two"), "--epochs", "2",
                   "--batch-size", "8", *MODEL_ARGS)
    assert two.returncode == 0, two.stdout + two.stderr
    one = torchrun(1, "--data", str(prepared), "--out", str(tmp_path / "one"), "--epochs", "2",
                   "--batch-size", "16", *MODEL_ARGS)
    assert one.returncode == 0, one.stdout + one.stderr
    a = torch.load(tmp_path / "two" / "checkpoint.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "one" / "checkpoint.pt", weights_only=True)["model"]
    for name, tensor in a.items():
        torch.testing.assert_close(tensor, b[name], rtol=1e-4, atol=1e-5, msg=name)
    initial = torch.load(tmp_path / "one" / "checkpoint.pt", weights_only=True)["optimizer"]["state"]
    moved = sum(float(s["exp_avg"].abs().sum()) for s in initial.values())
    assert moved > 0, "the runs actually trained"
