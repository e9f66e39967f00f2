"""The benchmark commands themselves: a mistake in one is a one-line error, as in the CLI."""

from __future__ import annotations

import subprocess
import sys

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
