"""Replacing the live model while the server runs: reload on demand or by watching the folder, refusals that keep
the live model, and requests that never fail across swaps."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import time

import httpx
import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

from bert4rec.files import WEIGHTS_FILE, recorded_digest
from bert4rec.model.config import Bert4RecConfig
from bert4rec.model.modeling import Bert4Rec
from bert4rec.serving.access import Keys
from bert4rec.serving.app import create_app
from bert4rec.serving.batching import MicroBatcher
from bert4rec.serving.recommender import Filters, Recommender
from bert4rec.serving.swap import LiveModel, RefusedModelError

ADMIN = "admin-key-" + "a" * 20
WRITER = "writer-key-" + "w" * 20
HISTORY = {"history": [{"movieId": 1}, {"movieId": 2571}, {"movieId": 296}], "k": 10}


@pytest.fixture
def folders(untrained_model_dir, tmp_path):
    """Three model folders of one catalogue (a, b with other weights, broken with altered weights) and a
    ``current`` symlink to a."""
    a, b, broken = tmp_path / "a", tmp_path / "b", tmp_path / "broken"
    for folder in (a, b, broken):
        shutil.copytree(untrained_model_dir, folder)
    torch.manual_seed(1)
    Bert4Rec(Bert4RecConfig.load(b)).save(b)
    with open(broken / WEIGHTS_FILE, "r+b") as weights:
        weights.seek(-64, os.SEEK_END)
        weights.write(b"\xff" * 64)  # the last tensor, the item bias, starts at zero
    current = tmp_path / "current"
    current.symlink_to(a)
    return {"a": a, "b": b, "broken": broken, "current": current}


def point(current, target) -> None:
    """Flip the symlink as a retrain would: a new link renamed over the old one."""
    link = current.with_name(current.name + ".new")
    link.symlink_to(target)
    os.replace(link, current)


def record_validation(folder, ndcg: float) -> None:
    (folder / "metrics.json").write_text(json.dumps({"valid": {"full": {"NDCG@10": ndcg}}}))


def items(response) -> list[int]:
    assert response.status_code == 200, response.text
    return [m["movieId"] for m in response.json()["items"]]


def expected_items(folder) -> list[int]:
    found = Recommender.load(folder).recommend_history([m["movieId"] for m in HISTORY["history"]], k=10)
    return [m["movieId"] for m in found.items]


def test_reload_makes_the_new_model_live_for_the_next_request(folders):
    app = create_app(LiveModel.load(folders["current"]), keys=Keys(admin=(ADMIN,)))
    with TestClient(app) as client:
        before = items(client.post("/recommendations", json=HISTORY))
        assert before == expected_items(folders["a"])
        assert client.get("/health").json()["model"]["folder"] == str(folders["a"])
        point(folders["current"], folders["b"])
        assert items(client.post("/recommendations", json=HISTORY)) == before  # nothing changes until asked
        reloaded = client.post("/admin/reload", headers={"Authorization": f"Bearer {ADMIN}"})
        assert reloaded.status_code == 200 and reloaded.json()["model"]["folder"] == str(folders["b"])
        after = items(client.post("/recommendations", json=HISTORY))
        assert after == expected_items(folders["b"]) != before
        health = client.get("/health").json()
        assert health["model"]["version"] == recorded_digest(folders["b"], WEIGHTS_FILE)[:12]
        assert health["refused"] is None


def test_a_model_that_fails_to_load_is_refused_and_the_live_one_stays(folders):
    app = create_app(LiveModel.load(folders["current"]), keys=Keys(admin=(ADMIN,)))
    admin = {"Authorization": f"Bearer {ADMIN}"}
    with TestClient(app) as client:
        before = items(client.post("/recommendations", json=HISTORY))
        point(folders["current"], folders["broken"])
        refused = client.post("/admin/reload", headers=admin)
        assert refused.status_code == 409 and "the live one stays" in refused.json()["detail"]
        assert WEIGHTS_FILE in refused.json()["detail"]  # names the file that changed
        health = client.get("/health").json()
        assert health["model"]["folder"] == str(folders["a"])
        assert health["refused"]["folder"] == str(folders["broken"]) and WEIGHTS_FILE in health["refused"]["reason"]
        assert items(client.post("/recommendations", json=HISTORY)) == before
        point(folders["current"], folders["b"])
        assert client.post("/admin/reload", headers=admin).status_code == 200
        assert client.get("/health").json()["refused"] is None


def test_a_model_worse_on_validation_than_allowed_is_refused(folders):
    record_validation(folders["a"], 0.100)
    record_validation(folders["b"], 0.097)  # 3% below
    strict = LiveModel.load(folders["current"], max_drop=0.02)
    point(folders["current"], folders["b"])
    with pytest.raises(RefusedModelError, match=r"0\.0970 is more than 2% below the live model's 0\.1000"):
        asyncio.run(strict.reload())
    assert strict.info.folder == str(folders["a"])
    point(folders["current"], folders["a"])
    lenient = LiveModel.load(folders["current"], max_drop=0.05)
    point(folders["current"], folders["b"])
    assert asyncio.run(lenient.reload()).folder == str(folders["b"])
    (folders["b"] / "metrics.json").unlink()  # and training recorded none: nothing to compare with the live one's
    point(folders["current"], folders["a"])
    live = LiveModel.load(folders["current"])
    point(folders["current"], folders["b"])
    with pytest.raises(RefusedModelError, match="no validation result recorded"):
        asyncio.run(live.reload())


def test_reloading_needs_an_admin_key(folders):
    with TestClient(create_app(LiveModel.load(folders["current"]), keys=Keys(write=(WRITER,)))) as client:
        refused = client.post("/admin/reload", headers={"Authorization": f"Bearer {WRITER}"})
        assert refused.status_code == 403 and "BERT4REC_ADMIN_KEYS" in refused.json()["detail"]
    with TestClient(create_app(LiveModel.load(folders["current"]),
                               keys=Keys(write=(WRITER,), admin=(ADMIN,)))) as client:
        assert client.post("/admin/reload").status_code == 401
        assert client.post("/admin/reload", headers={"Authorization": f"Bearer {WRITER}"}).status_code == 403
        assert client.post("/admin/reload", headers={"Authorization": f"Bearer {ADMIN}"}).status_code == 200
    with TestClient(create_app(Recommender.load(folders["a"]), keys=Keys(admin=(ADMIN,)))) as client:
        built = client.post("/admin/reload", headers={"Authorization": f"Bearer {ADMIN}"})
        assert built.status_code == 409 and "nothing to reload" in built.json()["detail"]


def test_watch_makes_each_new_model_live_and_tries_a_refused_one_once(folders, caplog):
    app = create_app(LiveModel.load(folders["current"]), watch_s=0.05)
    with TestClient(app) as client:
        point(folders["current"], folders["b"])
        assert wait_for(lambda: client.get("/health").json()["model"]["folder"] == str(folders["b"]))
        assert items(client.post("/recommendations", json=HISTORY)) == expected_items(folders["b"])
        point(folders["current"], folders["broken"])
        assert wait_for(lambda: client.get("/health").json()["refused"] is not None)
        time.sleep(0.5)  # ten more looks at the same refused folder
        assert sum("model refused" in r.getMessage() for r in caplog.records) == 1
        assert client.get("/health").json()["model"]["folder"] == str(folders["b"])


def wait_for(condition, timeout_s: float = 30) -> bool:
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


def test_requests_across_three_swaps_all_succeed_each_on_one_model(folders):
    live = LiveModel.load(folders["current"])
    app = create_app(live, keys=Keys(admin=(ADMIN,)))
    answers = {tuple(expected_items(folders["a"])), tuple(expected_items(folders["b"]))}

    async def scenario() -> tuple[list[int], list[tuple]]:
        statuses, seen, done = [], [], asyncio.Event()
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as http:
            async def hammer() -> None:
                while not done.is_set():
                    response = await http.post("/recommendations", json=HISTORY)
                    statuses.append(response.status_code)
                    if response.status_code == 200:
                        seen.append(tuple(m["movieId"] for m in response.json()["items"]))

            clients = [asyncio.ensure_future(hammer()) for _ in range(4)]
            for target in ("b", "a", "b"):
                await asyncio.sleep(0.2)
                point(folders["current"], folders[target])
                reloaded = await http.post("/admin/reload", headers={"Authorization": f"Bearer {ADMIN}"})
                statuses.append(reloaded.status_code)
            await asyncio.sleep(0.2)
            done.set()
            await asyncio.gather(*clients)
        await app.state.batcher.stop()
        return statuses, seen

    statuses, seen = asyncio.run(scenario())
    assert set(statuses) == {200} and len(statuses) > 20
    assert set(seen) == answers  # every answer is wholly one model's, and both models answered


def test_one_batch_scores_each_request_with_the_model_it_started_with(folders):
    old, new = Recommender.load(folders["a"]), Recommender.load(folders["b"])
    rows = np.array([0, 5, 9])

    async def scenario():
        batcher = MicroBatcher(max_batch=8)
        calls = [batcher.recommend(model, rows, None, 5, Filters(), False) for model in (old, new, old, new)]
        results = await asyncio.gather(*calls)
        await batcher.stop()
        return batcher.batch_sizes, results

    sizes, results = asyncio.run(scenario())
    assert sizes == [4]  # one batch, two models
    for model, result in zip((old, new, old, new), results, strict=True):
        direct = model.recommend_rows(rows, 5, Filters()).items
        assert [m["movieId"] for m in result.items] == [m["movieId"] for m in direct]


def test_serve_hands_uvicorn_an_app_that_watches_refuses_and_guards_reads_as_asked(untrained_model_dir, monkeypatch):
    from bert4rec.errors import Bert4RecError
    from bert4rec.serving import app as app_module

    started = []
    monkeypatch.setattr("uvicorn.run", lambda app, host, port, **kw: started.append(app))
    monkeypatch.setenv("BERT4REC_API_KEYS", WRITER)
    app_module.serve(str(untrained_model_dir), watch_s=0.5, max_drop=0.1, read_key=True)
    assert started[-1].state.live.max_drop == 0.1
    with TestClient(started[-1]) as client:
        assert client.get("/health").json()["watchS"] == 0.5
        assert client.get("/movies").status_code == 401  # --read-key: reads need a key
    for bad in (0, -1.5):
        with pytest.raises(Bert4RecError, match=rf"--watch takes the seconds between looks, above 0 \(not {bad}\)"):
            app_module.serve(str(untrained_model_dir), watch_s=bad)
