"""The documentation: its generated tables match the committed results, and a stale table is caught."""

from __future__ import annotations

import shutil
import subprocess
import sys

from conftest import REPO

SCRIPT = REPO / "benchmarks" / "doc_tables.py"


def check(root) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), "--check", "--root", str(root)], capture_output=True,
                          text=True)


def test_generated_tables_match_the_results():
    result = check(REPO)
    assert result.returncode == 0, result.stderr


def test_a_table_edited_by_hand_is_caught(tmp_path):
    shutil.copy(REPO / "README.md", tmp_path / "README.md")
    shutil.copytree(REPO / "docs", tmp_path / "docs")
    results = tmp_path / "docs" / "results.md"
    text = results.read_text()
    assert "0.1927" in text
    results.write_text(text.replace("0.1927", "0.1999", 1))
    result = check(tmp_path)
    assert result.returncode == 1 and "docs/results.md: ml1m-runs" in result.stderr


def test_readme_stays_short():
    assert len((REPO / "README.md").read_bytes()) <= 20_000


def test_the_settings_column_names_every_switch_a_quality_run_can_flip():
    # A switch the column leaves out makes two different runs read as the same settings.
    sys.path.insert(0, str(REPO / "benchmarks"))
    import doc_tables
    import quality

    assert set(quality.FLAGS["bool"]) <= set(doc_tables.PAPER)
    assert "genre-aware True" in doc_tables.settings({**doc_tables.PAPER, "genre_aware": True})
