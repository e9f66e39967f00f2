"""The server with an event store, through HTTP, on SQLite and on a real PostgreSQL server: events in,
recommendations that follow them at once, keys on every write, erasure."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from bert4rec.errors import Bert4RecError
from bert4rec.serving import app as app_module
from bert4rec.serving.access import Keys
from bert4rec.serving.app import create_app
from bert4rec.serving.recommender import Recommender
from bert4rec.store import EventStore, MovieRecord, connect, migrate

KEY, READ_KEY = "k" * 32, "r" * 32
AUTH = {"Authorization": f"Bearer {KEY}"}
NEW_USER = 10_000_001


@pytest.fixture(scope="module")
def recommender(untrained_model_dir) -> Recommender:
    return Recommender.load(untrained_model_dir)


@pytest.fixture
def store(store_url, recommender) -> EventStore:
    migrate(connect(store_url, create=True))
    opened = EventStore.open(store_url)
    movies = recommender.catalog.movies
    opened.add_movies(MovieRecord(int(i), str(t), None if y is None or y != y else int(y), str(g))
                      for i, t, y, g in zip(movies["item_id"], movies["title"], movies["year"], movies["genres"],
                                            strict=True))
    yield opened
    opened.close()


@pytest.fixture
def client(recommender, store):
    with TestClient(create_app(recommender, store=store, keys=Keys(write=(KEY,), read=(READ_KEY,)))) as client:
        yield client


def recommendations(client, user: int, k: int = 10) -> dict:
    response = client.get(f"/users/{user}/recommendations", params={"k": k})
    assert response.status_code == 200, response.text
    return response.json()


def test_events_of_a_new_user_drive_their_next_recommendations(client):
    assert recommendations(client, NEW_USER)["fallback"] == "popularity"  # nothing known yet
    events = [{"userId": NEW_USER, "movieId": m, "rating": 4.5, "timestamp": 1_600_000_000 + i}
              for i, m in enumerate((1, 2571, 296))]
    assert client.post("/events", json=events, headers=AUTH).json() == {"stored": 3, "duplicates": 0}
    after = recommendations(client, NEW_USER, k=20)  # the very next request: read-your-writes
    assert after["fallback"] is None
    assert [m["movieId"] for m in after["history"]] == [1, 2571, 296]
    assert {1, 2571, 296}.isdisjoint(item["movieId"] for item in after["items"])
    same = client.post("/recommendations", json={"history": [{"movieId": m} for m in (1, 2571, 296)], "k": 20})
    assert [i["movieId"] for i in after["items"]] == [i["movieId"] for i in same.json()["items"]]
    client.post("/events", json={"userId": NEW_USER, "movieId": 318, "timestamp": 1_600_000_010}, headers=AUTH)
    latest = recommendations(client, NEW_USER, k=20)
    assert [m["movieId"] for m in latest["history"]][-1] == 318 and latest["items"] != after["items"]


def test_a_rating_and_time_aware_model_reads_the_stored_ratings_and_gaps(untrained_aware_dir, store):
    aware = Recommender.load(untrained_aware_dir)
    history = [{"movieId": 1, "rating": 5.0, "timestamp": 1_600_000_000},
               {"movieId": 2571, "timestamp": 1_600_000_000},  # not rated; same second
               {"movieId": 296, "rating": 1.5, "timestamp": 1_600_090_000}]  # a day later
    with TestClient(create_app(aware, store=store, keys=Keys(write=(KEY,)))) as client:
        client.post("/events", json=[{"userId": NEW_USER, **e} for e in history], headers=AUTH)
        stored = recommendations(client, NEW_USER, k=20)["items"]
        adhoc = client.post("/recommendations", json={"history": history, "k": 20}).json()["items"]
        bare = client.post("/recommendations", json={"history": [{"movieId": e["movieId"]} for e in history],
                                                     "k": 20}).json()["items"]
    assert [(i["movieId"], i["score"]) for i in stored] == [(i["movieId"], i["score"]) for i in adhoc]
    assert [i["score"] for i in stored] != [i["score"] for i in bare]  # the ratings and gaps were read


def test_the_store_alone_holds_histories(client, recommender):
    # User 1 is in the model's training data, but not in this store: nothing known, until they act.
    assert recommendations(client, 1)["fallback"] == "popularity"
    client.post("/events", json={"userId": 1, "movieId": 2571}, headers=AUTH)
    assert [m["movieId"] for m in recommendations(client, 1)["history"]] == [2571]


def test_retries_with_the_same_event_id_are_stored_once(client):
    event = {"userId": NEW_USER, "movieId": 1, "eventId": "click-1"}
    assert client.post("/events", json=event, headers=AUTH).json() == {"stored": 1, "duplicates": 0}
    assert client.post("/events", json=[event, event], headers=AUTH).json() == {"stored": 0, "duplicates": 2}
    assert len(client.get(f"/users/{NEW_USER}/events").json()) == 1


def test_keys_guard_every_write_and_reads_stay_open(client):
    writes = [("post", "/events", {"userId": 5, "movieId": 1}), ("delete", f"/users/{NEW_USER}", None),
              ("post", "/movies", {"movieId": 999_999_001, "title": "New (2026)"})]
    for method, path, body in writes:
        assert client.request(method, path, json=body).status_code == 401
        wrong = client.request(method, path, json=body, headers={"Authorization": "Bearer " + "x" * 32})
        assert wrong.status_code == 403 and "may not write" in wrong.json()["detail"]
        read_only = client.request(method, path, json=body, headers={"Authorization": f"Bearer {READ_KEY}"})
        assert read_only.status_code == 403
    assert client.get("/users/5/events").status_code == 404  # nothing was written
    assert client.get("/users/1/recommendations").status_code == 200 and client.get("/metrics").status_code == 200


def test_an_unknown_movie_is_named_until_it_is_added(client):
    response = client.post("/events", json={"userId": 7, "movieId": 999_999_001}, headers=AUTH)
    assert response.status_code == 422 and "999999001" in response.json()["detail"]
    movie = {"movieId": 999_999_001, "title": "Brand New Film (2026)", "genres": ["Drama", "Sci-Fi"]}
    added = client.post("/movies", json=movie, headers=AUTH)
    assert added.status_code == 201 and added.json() == {"movieId": 999_999_001, "title": "Brand New Film (2026)",
                                                         "year": 2026, "genres": ["Drama", "Sci-Fi"],
                                                         "recommendable": False}
    assert client.post("/movies", json=movie, headers=AUTH).status_code == 409
    assert client.get("/movies/999999001").json()["recommendable"] is False
    assert client.get("/movies", params={"q": "brand new film"}).json()[0]["movieId"] == 999_999_001
    assert client.post("/events", json={"userId": 7, "movieId": 999_999_001}, headers=AUTH).json()["stored"] == 1
    # Its only event is a movie the model cannot read yet: popularity, flagged.
    assert recommendations(client, 7)["fallback"] == "popularity"


def test_events_newest_first_and_erasure_removes_everything(client, store):
    client.post("/events", json=[{"userId": 8, "movieId": m, "timestamp": t} for m, t in ((1, 10), (2, 30), (3, 20))],
                headers=AUTH)
    assert [e["movieId"] for e in client.get("/users/8/events", params={"limit": 2}).json()] == [2, 3]
    assert client.delete("/users/8", headers=AUTH).json() == {"userId": 8, "events": 3}
    assert client.get("/users/8/events").status_code == 404
    assert client.delete("/users/8", headers=AUTH).status_code == 404
    assert recommendations(client, 8)["fallback"] == "popularity"  # a user of the training data, erased
    assert store.counts()["events"] == 0


@pytest.mark.parametrize(("body", "fragment"), [
    ({"userId": 1, "movieId": 1, "timestamp": 4_000_000_000}, "more than a day ahead"),
    ({"userId": 1, "movieId": 1, "rating": 7}, "less than or equal to 5"),
    ({"userId": 2**63, "movieId": 1}, "less than or equal to"),
    ({"userId": 1, "movieId": -5}, "greater than or equal to 0"),
    ({"userId": -1, "movieId": 1}, "greater than or equal to 0"),
    ({"userId": 1, "movieId": 1, "eventId": ""}, "at least 1 character"),
    ({"userId": 1, "movieId": 1, "extra": 1}, "Extra inputs are not permitted"),
    ([], "at least 1 item"),
    ([{"userId": 1, "movieId": 1}] * 10_001, "at most 10000 items"),
])
def test_bad_events_are_4xx_and_nothing_is_stored(client, store, body, fragment):
    response = client.post("/events", json=body, headers=AUTH)
    assert response.status_code == 422 and fragment in response.text
    assert store.counts()["events"] == 0


def test_non_finite_numbers_in_events_are_4xx(client, store):
    for value in ("NaN", "Infinity", "-Infinity"):
        for field in ("rating", "timestamp", "userId", "movieId"):
            body = f'{{"userId": 1, "movieId": 1, "{field}": {value}}}'
            response = client.post("/events", content=body, headers=AUTH | {"Content-Type": "application/json"})
            assert response.status_code == 422, (field, value, response.text)
    assert store.counts()["events"] == 0


def test_sql_in_strings_is_just_text(client, store):
    sneaky = "x'); DROP TABLE events; --"
    event = {"userId": 9, "movieId": 1, "eventId": sneaky}
    assert client.post("/events", json=event, headers=AUTH).json()["stored"] == 1
    assert client.get("/users/9/events").json()[0]["eventId"] == sneaky
    assert client.get("/movies", params={"q": sneaky}).status_code == 200
    assert store.counts()["events"] == 1


def test_reads_need_a_key_when_asked_and_health_never_does(recommender, store):
    keys = Keys(write=(KEY,), read=(READ_KEY,), reads_need_key=True)
    with TestClient(create_app(recommender, store=store, keys=keys)) as client:
        assert client.get("/movies").status_code == 401
        assert client.get("/users/1/recommendations").status_code == 401
        assert client.get("/metrics").status_code == 401
        assert client.get("/movies", headers={"Authorization": f"Bearer {READ_KEY}"}).status_code == 200
        for path in ("/health", "/health/live", "/health/ready", "/"):
            assert client.get(path).status_code == 200, path
        assert client.get("/health/ready").json() == {"status": "ok", "store": store.name}


def test_metrics_count_requests_batches_and_events(client):
    client.post("/events", json=[{"userId": 3, "movieId": 1}, {"userId": 3, "movieId": 2}], headers=AUTH)
    recommendations(client, 3)
    text = client.get("/metrics").text
    assert "bert4rec_events_stored_total 2.0" in text
    assert 'bert4rec_requests_total{method="POST",route="/events",status="200"} 1.0' in text
    assert 'bert4rec_request_seconds_count{method="GET",route="/users/{userId}/recommendations"} 1.0' in text
    assert 'bert4rec_batch_size_count{stage="store"} 1.0' in text


def test_keys_from_the_environment_and_a_file(tmp_path, monkeypatch):
    monkeypatch.setenv("BERT4REC_API_KEYS", f"{KEY}, {'m' * 20}")
    keys_file = tmp_path / "keys"
    keys_file.write_text(f"# ops\n{'f' * 24}\n\n")
    assert Keys.configured(keys_file).write == (KEY, "m" * 20, "f" * 24)
    monkeypatch.setenv("BERT4REC_API_KEYS", "short")
    with pytest.raises(Bert4RecError, match="at least 16 characters"):
        Keys.configured()
    monkeypatch.delenv("BERT4REC_API_KEYS")
    with pytest.raises(Bert4RecError, match="cannot read the API keys file"):
        Keys.configured(tmp_path / "missing")
    with pytest.raises(Bert4RecError, match="--read-key needs keys"):
        Keys.configured(reads_need_key=True)


def test_a_server_with_a_store_refuses_to_start_without_keys_unless_open_on_loopback(
        untrained_model_dir, store_url, monkeypatch):
    migrate(connect(store_url, create=True))
    monkeypatch.delenv("BERT4REC_API_KEYS", raising=False)
    started = []
    monkeypatch.setattr("uvicorn.run", lambda app, host, port, **kw: started.append(host))
    with pytest.raises(Bert4RecError, match=r"takes writes: give API keys \(BERT4REC_API_KEYS or --api-keys-file\), "
                                            r"or --open-writes to try it on this machine only$"):
        app_module.serve(str(untrained_model_dir), db=store_url)
    with pytest.raises(Bert4RecError, match=r"listens on 127\.0\.0\.1 only, not 0\.0\.0\.0"):
        app_module.serve(str(untrained_model_dir), host="0.0.0.0", db=store_url, open_writes=True)
    app_module.serve(str(untrained_model_dir), db=store_url, open_writes=True)
    monkeypatch.setenv("BERT4REC_API_KEYS", KEY)
    app_module.serve(str(untrained_model_dir), host="0.0.0.0", db=store_url)
    assert started == ["127.0.0.1", "0.0.0.0"]


def test_one_json_log_line_per_request(client, capsys):
    import json

    from bert4rec.serving.access import access_log, configure_access_log

    configure_access_log("json")
    try:
        client.get("/movies/1")
        client.get("/users/1/events")
    finally:
        access_log.handlers.clear()
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert [(r["method"], r["path"], r["route"], r["status"]) for r in lines] == [
        ("GET", "/movies/1", "/movies/{movieId}", 200), ("GET", "/users/1/events", "/users/{userId}/events", 404)]
    assert all(r["ms"] > 0 and r["level"] == "info" for r in lines)


def test_a_store_that_cannot_answer_is_a_503_with_retry_after(client, store, monkeypatch):
    from bert4rec.errors import StoreError

    def unreachable(*args, **kwargs):
        raise StoreError("postgresql+psycopg://db/x: connection refused")

    monkeypatch.setattr(client.app.state.event_writer, "work", unreachable)
    monkeypatch.setattr(store, "histories", unreachable)
    monkeypatch.setattr(store, "ping", unreachable)
    for response in (client.post("/events", json={"userId": 1, "movieId": 1}, headers=AUTH),
                     client.get("/users/1/recommendations"), client.get("/health/ready")):
        assert response.status_code == 503 and response.headers["Retry-After"] == "1"
        assert "event store is unavailable: postgresql+psycopg://db/x: connection refused" in response.json()["detail"]
    assert "bert4rec_store_errors_total 3.0" in client.get("/metrics").text


def test_serve_hands_uvicorn_the_app_it_was_asked_for(untrained_model_dir, store, store_url, tmp_path, monkeypatch):
    import torch

    from bert4rec.serving.access import JsonLines, access_log

    monkeypatch.delenv("BERT4REC_API_KEYS", raising=False)
    started = []
    monkeypatch.setattr("uvicorn.run", lambda app, host, port, **kw: started.append((app, host, port, kw)))
    threads = torch.get_num_threads()
    try:
        app_module.serve(str(untrained_model_dir), db=store_url, open_writes=True, threads=1)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(threads)
    app, host, port, options = started[-1]
    assert (host, port, options) == ("127.0.0.1", 8000, {"log_level": "info", "access_log": False})
    assert not isinstance(access_log.handlers[0].formatter, JsonLines)
    with TestClient(app) as opened:
        assert opened.get("/health").json()["store"] == store.name
        assert opened.post("/events", json={"userId": 1, "movieId": 1}).status_code == 200  # open writes
    keys_file = tmp_path / "keys"
    keys_file.write_text(KEY + "\n")
    app_module.serve(str(untrained_model_dir), host="0.0.0.0", db=store_url, api_keys_file=str(keys_file),
                     log_format="json")
    assert isinstance(access_log.handlers[0].formatter, JsonLines)
    access_log.handlers.clear()
    with TestClient(started[-1][0]) as opened:
        assert opened.post("/events", json={"userId": 1, "movieId": 1}).status_code == 401
        assert opened.post("/events", json={"userId": 1, "movieId": 1}, headers=AUTH).status_code == 200


def test_an_app_without_a_store_searches_its_catalogue_and_counts_its_batches(recommender):
    with TestClient(create_app(recommender)) as opened:
        assert opened.get("/movies", params={"q": "toy story"}).json()[0]["movieId"] == 1
        assert opened.post("/recommendations", json={"history": [{"movieId": 1}]}).status_code == 200
        assert opened.get("/users/1/recommendations").json()["fallback"] is None  # the model's own history
        assert 'bert4rec_batch_size_count{stage="model"} 2.0' in opened.get("/metrics").text
