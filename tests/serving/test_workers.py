"""How the workers of one server meet: signals, and the settings each worker builds its app from (the server of
several processes itself is tested in test_live_processes.py)."""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict
from pathlib import Path

import pytest
import torch
from fastapi.testclient import TestClient

from bert4rec.errors import Bert4RecError
from bert4rec.serving import app as app_module
from bert4rec.serving.workers import MULTIPROCESS_ENV, SETTINGS_ENV, Signal
from bert4rec.store import EventStore, connect, migrate

KEY = "worker-test-key-" + "k" * 20


def test_a_signal_reaches_every_other_worker_once_and_never_its_sender(tmp_path):
    first, second, third = (Signal(tmp_path / "signal") for _ in range(3))
    assert not second.received()  # nothing sent yet
    first.send()
    assert not first.received()
    assert second.received() and not second.received()
    assert third.received()
    second.send()
    assert first.received() and third.received() and not second.received()
    first.send()
    first.send()  # twice before anyone looks: one change seen
    assert second.received() and not second.received()
    assert Signal(tmp_path / "signal").received() is False  # a worker started later has nothing to catch up on


def test_serve_with_workers_hands_uvicorn_the_worker_factory_and_settings_it_builds_from(
        untrained_model_dir, tmp_path, monkeypatch):
    keys_file = tmp_path / "keys"
    keys_file.write_text(KEY + "\n")
    seen = []

    def run(app, host, port, **options):
        settings = json.loads(os.environ[SETTINGS_ENV])
        assert Path(os.environ[MULTIPROCESS_ENV]).is_dir()
        with TestClient(app_module.worker_app()) as client:  # what each worker does first
            health = client.get("/health").json()
            assert client.post("/events", json={"userId": 1, "movieId": 1}).status_code == 401  # a store: keys
        seen.append((app, host, port, options, settings, health, torch.get_num_threads()))

    monkeypatch.setattr("uvicorn.run", run)
    url_db = f"sqlite:///{tmp_path / 'events.db'}"
    migrate(connect(url_db, create=True))
    threads = torch.get_num_threads()
    try:
        app_module.serve(untrained_model_dir, port=8123, db=url_db,
                         api_keys_file=keys_file, workers=2, watch_s=3)
    finally:
        torch.set_num_threads(threads)
    (app, host, port, options, settings, health, worker_threads), = seen
    assert (app, host, port) == ("bert4rec.serving.app:worker_app", "127.0.0.1", 8123)
    assert options == {"factory": True, "workers": 2, "log_level": "info", "access_log": False}
    assert settings["model_dir"] == str(untrained_model_dir) and settings["api_keys_file"] == str(keys_file)
    assert settings["workers"] == 2 and settings["watch_s"] == 3
    assert health["watchS"] == 3 and health["store"] is not None
    assert worker_threads == max(1, (os.cpu_count() or 1) // 2)  # the cores shared out among the workers
    assert SETTINGS_ENV not in os.environ and MULTIPROCESS_ENV not in os.environ  # put back as they were
    assert not Path(settings["shared_dir"]).exists()  # gone with the server


def test_serve_checks_everything_once_before_it_starts_workers(untrained_model_dir, tmp_path, monkeypatch):
    monkeypatch.setattr("uvicorn.run", lambda *args, **kw: pytest.fail("uvicorn started"))
    with pytest.raises(Bert4RecError, match=r"--workers is a number of processes, at least 1 \(not 0\)"):
        app_module.serve(str(untrained_model_dir), workers=0)
    with pytest.raises(Bert4RecError, match="no such model folder"):
        app_module.serve(str(tmp_path / "missing"), workers=2)


def test_a_worker_that_cannot_build_its_app_stops_the_server_instead_of_restarting(tmp_path, monkeypatch, caplog):
    from uvicorn.config import STARTUP_FAILURE

    monkeypatch.setenv(SETTINGS_ENV, json.dumps(asdict(app_module.ServeSettings(str(tmp_path / "gone")))))
    with pytest.raises(SystemExit) as stopped:
        app_module.worker_app()
    assert stopped.value.code == STARTUP_FAILURE  # uvicorn's code for "do not start this worker again"
    assert "a worker could not start:" in caplog.text and "no such model folder" in caplog.text


def test_a_worker_that_could_not_start_makes_serve_fail_with_its_reason(untrained_model_dir, tmp_path, monkeypatch):
    model = tmp_path / "model"
    shutil.copytree(untrained_model_dir, model)

    def run(app, **options):  # the model folder goes away after the parent's checks, before a worker loads it
        shutil.rmtree(model)
        with pytest.raises(SystemExit):  # the worker process exits; uvicorn then stops and returns
            app_module.worker_app()

    monkeypatch.setattr("uvicorn.run", run)
    threads = torch.get_num_threads()
    try:
        with pytest.raises(Bert4RecError, match=r"a worker could not start, so the server stopped: .*no such model"):
            app_module.serve(str(model), workers=2)
    finally:
        torch.set_num_threads(threads)
    assert SETTINGS_ENV not in os.environ


def test_a_model_that_fails_to_load_leaves_no_store_open(tmp_path, monkeypatch):
    url_db = f"sqlite:///{tmp_path / 'events.db'}"
    migrate(connect(url_db, create=True))
    keys_file = tmp_path / "keys"
    keys_file.write_text(KEY + "\n")
    closed, close = [], EventStore.close
    monkeypatch.setattr(EventStore, "close", lambda store: (closed.append(store), close(store)))
    with pytest.raises(Bert4RecError, match="no such model folder"):
        app_module.build_app(app_module.ServeSettings(str(tmp_path / "gone"), db=url_db, api_keys_file=str(keys_file)))
    assert len(closed) == 1
