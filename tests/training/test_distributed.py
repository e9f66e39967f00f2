"""DDP under torchrun with 2 CPU processes (gloo); on a CUDA machine, the NCCL parts one GPU can check."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys

import pytest
import torch
from conftest import read_checkpoint, shared
from test_reliability import pattern_prepared

from bert4rec.errors import Bert4RecError
from bert4rec.serving.recommender import Recommender
from bert4rec.training import distributed
from bert4rec.training.distributed import Dist, from_environment

# --device cpu: gloo on CPUs wherever the tests run (two processes cannot share one GPU under NCCL).
MODEL_ARGS = ["--hidden-size", "16", "--layers", "1", "--heads", "2", "--max-len", "16", "--dropout", "0",
              "--precision", "fp32", "--device", "cpu", "--quiet"]


def launch(launcher: list[str], *args: str, timeout: int = 300,
           env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    # Loopback only: gloo otherwise picks the interface its hostname resolves to. On a hang, every process of the
    # launch prints its Python stacks (faulthandler, on SIGABRT) into the failure, so that it can be understood.
    env = os.environ | {"OMP_NUM_THREADS": "1", "GLOO_SOCKET_IFNAME": "lo", "PYTHONFAULTHANDLER": "1"} | (env or {})
    command = [*launcher, "-m", "bert4rec.cli", "train", *args]
    # A session of its own, so that a timeout reaches the launcher's worker processes too.
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                          start_new_session=True) as process:
        try:
            stdout, stderr = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGABRT)
            try:
                stdout, stderr = process.communicate(timeout=30)
            except subprocess.TimeoutExpired as still:  # the launcher outlived its workers' abort: report what came
                stdout, stderr = (_text(still.output), _text(still.stderr))
            finally:
                os.killpg(process.pid, signal.SIGKILL)
            pytest.fail(f"the launch hung for {timeout} s; the stacks of its processes:\n{stdout}\n{stderr}")
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


def _text(output: bytes | str | None) -> str:
    return output.decode(errors="replace") if isinstance(output, bytes) else output or ""


def torchrun(processes: int, *args: str) -> subprocess.CompletedProcess:
    # --standalone: the launcher binds a free port itself (port 0), so no other process can take it in between.
    return launch([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}"],
                  *args)


def accelerate_launch(processes: int, *args: str) -> subprocess.CompletedProcess:
    # --multi_gpu is accelerate's torchrun-based launcher; without a GPU our code picks gloo on the CPU. accelerate
    # has no flag for torchrun's --standalone; PET_STANDALONE is how torchrun reads that flag from the environment.
    return launch([sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu",
                   f"--num_processes={processes}", "--num_machines=1", "--mixed_precision=no", "--dynamo_backend=no"],
                  *args, timeout=200, env={"PET_STANDALONE": "1"})


@pytest.mark.parametrize(("variables", "expected"), [
    ({}, Dist(0, 1, 0)),
    ({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1"}, Dist(3, 4, 1)),
    ({"OMPI_COMM_WORLD_RANK": "1", "OMPI_COMM_WORLD_SIZE": "2", "OMPI_COMM_WORLD_LOCAL_RANK": "1"}, Dist(1, 2, 1)),
    ({"PMI_RANK": "2", "PMI_SIZE": "3"}, Dist(2, 3, 0)),
])
def test_rank_and_world_size_come_from_any_launcher(monkeypatch, variables, expected):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "PMI_RANK",
                 "PMI_SIZE", "MV2_COMM_WORLD_RANK", "MV2_COMM_WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    assert from_environment() == expected


@pytest.mark.slow
@pytest.mark.parametrize("launcher", [torchrun, accelerate_launch])
def test_two_processes_train_a_loadable_model(tmp_path, launcher):
    out = tmp_path / "model"
    done = launcher(2, "--data", str(shared("ml-latest-small")), "--out", str(out), "--epochs", "1", *MODEL_ARGS)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("training summary") == 1  # rank 0 alone reports
    assert re.search(r"processes\s*│\s*2\b", done.stdout), done.stdout
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
    a = read_checkpoint(tmp_path / "two")["model"]
    b = read_checkpoint(tmp_path / "one")["model"]
    for name, tensor in a.items():
        torch.testing.assert_close(tensor, b[name], rtol=1e-4, atol=1e-5, msg=name)
    initial = read_checkpoint(tmp_path / "one")["optimizer"]["state"]
    moved = sum(float(s["exp_avg"].abs().sum()) for s in initial.values())
    assert moved > 0, "the runs actually trained"


def test_a_process_without_a_gpu_of_its_own_stops_with_a_clear_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(Bert4RecError, match=r"process 1 on this machine has no GPU of its own \(1 CUDA device"):
        distributed.start(Dist(rank=1, world=2, local_rank=1), torch.device("cuda"))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="NCCL needs a CUDA device")
def test_ranks_agree_over_nccl(tmp_path):
    """NCCL carries CUDA tensors only: a one-process NCCL group stands in for a multi-GPU run."""
    dist = Dist(rank=0, world=2, local_rank=0)  # enabled, so every collective really goes through NCCL
    torch.distributed.init_process_group("nccl", rank=0, world_size=1, init_method=f"file://{tmp_path / 'store'}")
    try:
        assert torch.distributed.get_backend() == "nccl"
        assert distributed.agree(True, dist) is True
        assert distributed.agree(False, dist) is False
        distributed.barrier(dist)
    finally:
        torch.distributed.destroy_process_group()
