from __future__ import annotations

import asyncio
import os
import re

import httpx
import numpy as np
import pytest
from fastapi import HTTPException
from fastapi.testclient import TestClient

from bert4rec.serving.app import create_app
from bert4rec.serving.recommender import Filters, Recommender
from bert4rec.serving.schemas import RecommendationResponse


@pytest.fixture(scope="module")
def recommender(untrained_model_dir) -> Recommender:
    return Recommender.load(untrained_model_dir)


@pytest.fixture(scope="module")
def client(recommender):
    with TestClient(create_app(recommender)) as client:
        yield client


def test_health_and_docs(client):
    health = client.get("/health").json()
    assert health.pop("model")["version"] == "in memory"  # built from a Recommender, not loaded from a folder
    assert health.pop("process") == os.getpid()  # the test client calls the app in this process
    assert health == {"status": "ok", "movies": 3650, "users": 610, "rating_aware": False, "time_aware": False,
                      "genre_aware": False, "year_aware": False,
                      "store": None, "refused": None, "watchS": None}
    assert client.get("/docs").status_code == 200
    schema = client.get("/openapi.json").json()
    assert {"/health", "/movies", "/movies/{movieId}", "/recommendations", "/users/{userId}/recommendations"} <= set(
        schema["paths"])


def test_movie_search_and_lookup(client):
    found = client.get("/movies", params={"q": "toy story", "limit": 3}).json()
    assert found[0] == {"movieId": 1, "title": "Toy Story (1995)", "year": 1995,
                        "genres": ["Adventure", "Animation", "Children", "Comedy", "Fantasy"], "recommendable": True}
    assert len(found) == 3
    assert len(client.get("/movies", params={"q": "", "limit": 5}).json()) == 5  # most popular
    assert client.get("/movies/2571").json()["title"] == "Matrix, The (1999)"
    assert client.get("/movies/987654321").status_code == 404
    assert client.get("/movies/99999999999999999999999").status_code == 422


def test_recommendations_by_ids_and_titles(client, recommender):
    body = {"history": [{"movieId": 1}, {"title": "matrix"}, {"movieId": 296, "rating": 4.5}], "k": 7}
    response = client.post("/recommendations", json=body)
    assert response.status_code == 200, response.text
    data = response.json()
    assert len(data["items"]) == 7
    assert {1, 2571, 296}.isdisjoint(item["movieId"] for item in data["items"])
    assert [m["movieId"] for m in data["history"]] == [1, 2571, 296]
    assert all(item["because"]["movieId"] in {1, 2571, 296} for item in data["items"])
    direct = recommender.recommend_history([1, 2571, 296], k=7)
    assert [i["movieId"] for i in data["items"]] == [i["movieId"] for i in direct.items]


@pytest.mark.parametrize("body", [
    {"history": [{"movieId": 1}, {"title": "amelie"}, {"movieId": 296}], "k": 4},  # a title written with accents
    {"history": [{"movieId": 1}], "k": 3, "explain": False},  # no "because"
    {"history": [], "k": 2},  # the popularity fallback
])
def test_recommendation_bodies_are_what_the_response_model_writes(client, body):
    # The routes send the body as built, skipping FastAPI's response model: it must be the same JSON, defaults and all.
    raw = client.post("/recommendations", json=body)
    assert raw.status_code == 200, raw.text
    sent = raw.json()
    assert sent == RecommendationResponse.model_validate(sent).model_dump(mode="json")
    assert len(sent["items"]) == body["k"] and len(sent["history"]) == len(body["history"])
    assert "Amélie" in raw.text or not body["history"][1:]


def test_filters_and_cold_start(client):
    data = client.post("/recommendations", json={"history": [{"movieId": 1}], "genres": ["Horror"], "k": 5}).json()
    assert len(data["items"]) == 5 and all("Horror" in item["genres"] for item in data["items"])
    data = client.post("/recommendations", json={"history": [], "k": 3}).json()
    assert data["fallback"] == "popularity" and len(data["items"]) == 3
    data = client.post("/recommendations", json={"history": [{"movieId": 123456789}], "ignore_unknown": True}).json()
    assert data["fallback"] == "popularity"


def test_user_recommendations(client):
    data = client.get("/users/1/recommendations", params={"k": 4}).json()
    assert len(data["items"]) == 4
    assert client.get("/users/999999/recommendations").status_code == 404


@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        ({"history": [{"movieId": 123456789}]}, 422, "unknown movie id"),
        ({"history": [{"title": "hamlet"}]}, 422, "matches several movies"),
        ({"history": [{"title": "qwertyuiopzxcv"}]}, 422, "no movie matches"),
        ({"history": [{"movieId": 1}], "k": 0}, 422, "k"),
        ({"history": [{"movieId": 1}], "k": 5000}, 422, "k"),
        ({"history": [{"movieId": 1, "title": "Heat"}]}, 422, "extra_forbidden"),
        ({"history": [{"movieId": 2**70}]}, 422, "movieId"),
        ({"history": [{"movieId": 1}] * 10_001}, 422, "history"),
        ({"history": [{"movieId": 1}], "surprise": 1}, 422, "surprise"),
    ],
)
def test_bad_requests_get_4xx(client, body, status, fragment):
    response = client.post("/recommendations", json=body)
    assert response.status_code == status, response.text
    assert fragment in response.text


NON_FINITE = ("NaN", "Infinity", "-Infinity")  # accepted by Python's JSON parser, not by strict JSON
NUMBER_SLOTS = {  # every place a number goes in a request body, with {} where the number is written
    "rating": '{"history": [{"movieId": 1, "rating": {}}]}',
    "timestamp": '{"history": [{"movieId": 1, "timestamp": {}}]}',
    "movieId": '{"history": [{"movieId": {}}]}',
    "title rating": '{"history": [{"title": "Heat", "rating": {}}]}',
    "k": '{"history": [{"movieId": 1}], "k": {}}',
    "year_min": '{"history": [{"movieId": 1}], "year_min": {}}',
    "year_max": '{"history": [{"movieId": 1}], "year_max": {}}',
    "exclude": '{"history": [{"movieId": 1}], "exclude": [{}]}',
}


@pytest.mark.parametrize("number", NON_FINITE)
@pytest.mark.parametrize("slot", NUMBER_SLOTS)
def test_non_finite_numbers_in_a_body_get_422(client, slot, number):
    body = NUMBER_SLOTS[slot].replace("{}", number)
    response = client.post("/recommendations", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 422, response.text
    assert "finite number" in response.text


@pytest.mark.parametrize("number", [*NON_FINITE, "nan", "inf"])
def test_non_finite_numbers_in_paths_and_queries_get_422(client, number):
    for url in (f"/movies/{number}", f"/users/{number}/recommendations", f"/users/1/recommendations?k={number}",
                f"/movies?q=a&limit={number}"):
        response = client.get(url)
        assert response.status_code == 422, (url, response.text)


def test_ambiguous_title_lists_candidates(client):
    response = client.post("/recommendations", json={"history": [{"title": "hamlet"}]})
    assert {c["title"] for c in response.json()["candidates"]} >= {"Hamlet (1990)", "Hamlet (1996)"}


def test_malformed_bodies(client):
    assert client.post("/recommendations", content=b"{not json",
                       headers={"Content-Type": "application/json"}).status_code == 422
    assert client.post("/recommendations", content=b"history=1",
                       headers={"Content-Type": "application/x-www-form-urlencoded"}).status_code == 422
    huge = b'{"history": [' + b'{"movieId": 1},' * 200_000 + b'{"movieId": 1}]}'
    refused = client.post("/recommendations", content=huge, headers={"Content-Type": "application/json"})
    assert refused.status_code == 413 and refused.json() == {"detail": "request body over 2,097,152 bytes"}


def test_a_chunked_body_without_content_length_is_cut_off_at_the_limit(client):
    def body():
        yield b'{"history": ['
        for _ in range(100_000):  # 3 MB in all; the limit is 2 MiB
            yield b'{"movieId": 1},' * 2
        yield b'{"movieId": 1}]}'

    response = client.post("/recommendations", content=body(), headers={"Content-Type": "application/json"})
    assert response.status_code == 413, response.text
    assert "request body over 2,097,152 bytes" in response.text
    assert "content-length" not in {k.lower() for k in response.request.headers}


def test_a_failing_batch_does_not_fail_the_next_request(recommender, monkeypatch):
    app = create_app(recommender)
    original, calls = recommender.score_histories, []

    def fail_once(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("out of memory, say")
        return original(*args, **kwargs)

    monkeypatch.setattr(recommender, "score_histories", fail_once)
    body = {"history": [{"movieId": 1}], "k": 3}
    with TestClient(app, raise_server_exceptions=False) as fresh:
        assert fresh.post("/recommendations", json=body).status_code == 500
        second = fresh.post("/recommendations", json=body)
    assert second.status_code == 200, second.text
    assert len(second.json()["items"]) == 3 and len(calls) == 2


def test_concurrent_requests_are_batched_and_agree_with_one_by_one(recommender):
    app = create_app(recommender)
    known = recommender.catalog.movies["item_id"].to_numpy()
    histories = [[int(known[i]), 260, int(known[100 + i % 7])] for i in range(48)]

    async def scenario():
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
                calls = [http.post("/recommendations", json={"history": [{"movieId": m} for m in h], "k": 5})
                         for h in histories]
                return await asyncio.gather(*calls)

    responses = asyncio.run(scenario())
    assert [r.status_code for r in responses] == [200] * len(responses), responses[0].text
    assert max(app.state.batcher.batch_sizes) > 1
    for history, response in zip(histories, responses, strict=True):
        expected = [i["movieId"] for i in recommender.recommend_history(history, k=5).items]
        assert [i["movieId"] for i in response.json()["items"]] == expected


def test_page_is_served_and_self_contained(client):
    response = client.get("/")
    assert response.status_code == 200 and "text/html" in response.headers["content-type"]
    assert "bert4rec" in response.text
    assert not re.search(r"(src|href)=\"https?://", response.text), "no CDN assets: the page works offline"


def test_liked_needs_a_rating_aware_model(client):
    response = client.post("/recommendations", json={"history": [{"movieId": 1}], "liked": True})
    assert response.status_code == 422
    assert "rating-aware" in response.json()["detail"]
    assert client.get("/users/1/recommendations", params={"liked": "true"}).status_code == 422


def test_rating_aware_model_reads_ratings_and_liked(untrained_aware_dir):
    recommender = Recommender.load(untrained_aware_dir)
    with TestClient(create_app(recommender)) as rating_client:
        assert rating_client.get("/health").json()["rating_aware"] is True
        def scores(body):
            response = rating_client.post("/recommendations", json=body | {"k": 20, "explain": False})
            assert response.status_code == 200, response.text
            return {item["movieId"]: item["score"] for item in response.json()["items"]}

        history = [{"movieId": 1, "rating": 5}, {"movieId": 2571, "rating": 1.5}, {"title": "heat"}]
        plain = scores({"history": history})
        liked = scores({"history": history, "liked": True})
        unrated = scores({"history": [{"movieId": 1}, {"movieId": 2571}, {"title": "heat"}]})
        assert plain != liked and plain != unrated  # the [MASK] type and the ratings reach the model
        direct = recommender.recommend_history([1, 2571, 6], 20, Filters(liked=True), ratings=[5, 1.5, None])
        assert [m["movieId"] for m in direct.items] == list(liked)  # the micro-batcher scores as a direct call
        timed = scores({"history": [h | {"timestamp": t} for h, t in zip(history, [0, 40, 90000], strict=True)]})
        assert timed != plain  # the gaps reach the model
        direct = recommender.recommend_history([1, 2571, 6], 20, ratings=[5, 1.5, None], timestamps=[0, 40, 90000])
        assert [m["movieId"] for m in direct.items] == list(timed)
        for times, message in (([0, None, 5], "for every movie"), ([0, 50, 40], "back in time")):
            body = {"history": [h | {"timestamp": t} for h, t in zip(history, times, strict=True)]}
            response = rating_client.post("/recommendations", json=body)
            assert response.status_code == 422 and message in response.json()["detail"]
        response = rating_client.get("/users/1/recommendations", params={"liked": "true", "k": 5})
        assert response.status_code == 200 and len(response.json()["items"]) == 5


def test_a_genre_and_year_aware_model_is_served_like_any_other(tiny_featured_dir):
    recommender = Recommender.load(tiny_featured_dir)
    with TestClient(create_app(recommender)) as featured:
        health = featured.get("/health").json()
        assert (health["genre_aware"], health["year_aware"]) == (True, True)
        response = featured.post("/recommendations", json={"history": [{"movieId": 1}, {"title": "matrix"}], "k": 10})
        assert response.status_code == 200, response.text
        direct = recommender.recommend_history([1, 2571], 10)  # features come from the model folder, not the request
        assert [m["movieId"] for m in response.json()["items"]] == [m["movieId"] for m in direct.items]
        user = int(recommender.user_index.index[0])
        assert len(featured.get(f"/users/{user}/recommendations", params={"k": 5}).json()["items"]) == 5
        assert featured.get("/").status_code == 200


@pytest.mark.parametrize("declared", [b"2097153", b"999999999999", b"12abc", b"-1"])
def test_a_body_declared_too_long_or_malformed_is_refused_before_it_is_read(declared):
    from bert4rec.serving.app import MAX_BODY_BYTES, BodyLimit

    async def app(scope, receive, send):  # never reached
        raise AssertionError("the request went through")

    async def receive():
        raise AssertionError("the body was read")

    sent = []

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/recommendations",
             "headers": [(b"content-type", b"application/json"), (b"content-length", declared)]}
    asyncio.run(BodyLimit(app)(scope, receive, send))
    assert sent[0]["status"] == 413
    assert f"request body over {MAX_BODY_BYTES:,} bytes".encode() in sent[1]["body"]


def test_a_body_at_the_limit_goes_through():
    from bert4rec.serving.app import MAX_BODY_BYTES, BodyLimit

    seen = []

    async def app(scope, receive, send):
        seen.append((await receive())["body"])

    body = b"x" * MAX_BODY_BYTES

    async def receive():
        return {"type": "http.request", "body": body, "more_body": False}

    scope = {"type": "http", "method": "POST", "path": "/", "headers": [(b"content-length", str(len(body)).encode())]}
    asyncio.run(BodyLimit(app)(scope, receive, None))
    assert seen == [body]


def test_batches_never_exceed_max_batch_and_a_cancelled_request_does_not_stall_the_others(recommender):
    from bert4rec.serving.batching import MicroBatcher
    from bert4rec.serving.recommender import Filters

    async def scenario():
        batcher = MicroBatcher(max_batch=4)
        rows = np.array([0, 5, 9])
        calls = [asyncio.ensure_future(batcher.recommend(recommender, rows, None, 3, Filters(), False))
                 for _ in range(11)]
        await asyncio.sleep(0)  # every request queued
        calls[1].cancel()  # its client went away while it waited in a batch
        results = await asyncio.wait_for(asyncio.gather(*calls, return_exceptions=True), timeout=60)
        await batcher.stop()
        return batcher.batch_sizes, results

    sizes, results = asyncio.run(scenario())
    assert sum(sizes) == 11 and max(sizes) == 4
    assert isinstance(results[1], asyncio.CancelledError)
    assert all(len(r.items) == 3 for i, r in enumerate(results) if i != 1)


def test_a_non_finite_number_is_echoed_by_name(client):
    response = client.post("/recommendations", content='{"history": [{"movieId": 1}], "k": -Infinity}',
                           headers={"Content-Type": "application/json"})
    assert response.json()["detail"][0]["input"] == "-inf"


def test_a_body_over_the_limit_in_small_messages_is_cut_off():
    from bert4rec.serving.app import MAX_BODY_BYTES, BodyLimit

    chunk = b"x" * (MAX_BODY_BYTES // 3 + 1)
    messages = [{"type": "http.request", "body": chunk, "more_body": i < 2} for i in range(3)]

    async def app(scope, receive, send):
        while (await receive())["more_body"]:
            pass

    async def receive():
        return messages.pop(0)

    scope = {"type": "http", "method": "POST", "path": "/", "headers": []}  # no Content-Length: streamed
    with pytest.raises(HTTPException) as refused:
        asyncio.run(BodyLimit(app)(scope, receive, None))
    assert refused.value.status_code == 413


def test_unknown_ids_are_skipped_wherever_they_are_in_the_history(client):
    body = {"history": [{"movieId": 1}, {"movieId": 123456789}, {"movieId": 296}], "ignore_unknown": True, "k": 3}
    data = client.post("/recommendations", json=body).json()
    assert [m["movieId"] for m in data["history"]] == [1, 296]
