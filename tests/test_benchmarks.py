"""The benchmark commands themselves: a mistake in one is a one-line error, as in the CLI; their arithmetic."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest
from conftest import REPO, shared


def test_a_quality_run_that_cannot_start_says_why_in_one_line(tmp_path):
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "weights").write_text("a model folder already")
    result = subprocess.run([sys.executable, str(REPO / "benchmarks" / "quality.py"), "--data",
                             str(shared("ml-latest-small")), "--epochs", "1", "--name", "taken", "--out", str(taken)],
                            capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr == f"error: {taken} already exists and is not empty\n"
    assert (taken / "weights").read_text() == "a model folder already"


def test_the_events_benchmark_compares_with_a_commit_repeat_by_repeat(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    events = importlib.import_module("events")
    current = {"single": [{"events_per_s": 100.0, "server_cpu_ms": 1.0}, {"events_per_s": 90.0, "server_cpu_ms": 1.2}]}
    before = {"single": [{"events_per_s": 50.0, "server_cpu_ms": 2.0}, {"events_per_s": 60.0, "server_cpu_ms": 2.0}]}
    ratios = events.ratios(current, before)["single"]
    assert ratios["events_per_s_ratio"] == pytest.approx({"min": 1.5, "median": 1.75, "max": 2.0})
    assert ratios["server_cpu_ms_ratio"] == pytest.approx({"min": 0.5, "median": 0.55, "max": 0.6})
    source = events.source_of("HEAD", tmp_path)  # the server to compare with: the package as that commit had it
    assert (source / "bert4rec" / "serving" / "app.py").is_file() and not (tmp_path / "tests").exists()
