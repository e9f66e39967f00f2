from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from bert4rec.data.token_types import GAP_FIRST, GAP_UNKNOWN, UNRATED, unpacked
from bert4rec.errors import InvalidRequestError, ModelFolderError, UnknownItemError, UnknownUserError
from bert4rec.files import record_digests
from bert4rec.serving.recommender import Filters, Recommender, history_types


@pytest.fixture(scope="module")
def recommender(tiny_model_dir) -> Recommender:
    return Recommender.load(tiny_model_dir)


def ids(recs) -> list[int]:
    return [item["movieId"] for item in recs.items]


def test_seen_items_are_never_returned(recommender):
    for user in recommender.user_index.index[:20]:
        history = set(recommender.catalog.movies["item_id"].to_numpy()[recommender.user_history(user)])
        recs = recommender.recommend_user(int(user), k=50)
        assert len(recs.items) == 50
        assert not history & set(ids(recs))
    recs = recommender.recommend_history([1, 356, 296], k=20)
    assert not {1, 356, 296} & set(ids(recs))
    with_seen = recommender.recommend_history([1, 356, 296], k=5,
                                              filters=Filters(exclude_seen=False, include=[1, 2, 3, 296, 356]))
    assert sorted(ids(with_seen)) == [1, 2, 3, 296, 356]


def model_inputs(recommender, monkeypatch) -> list:
    """The input batches the model is asked to score from now on, recorded as they pass."""
    seen_inputs = []
    original = recommender.model.score_last

    def spy(inputs, *args):
        seen_inputs.append(inputs.clone())
        return original(inputs, *args)

    monkeypatch.setattr(recommender.model, "score_last", spy)
    return seen_inputs


def test_mask_is_appended_after_the_history(recommender, monkeypatch):
    seen_inputs = model_inputs(recommender, monkeypatch)
    recommender.recommend_history([1, 356, 296], k=5)
    tokens = recommender.vocab.encode(np.array([1, 356, 296])).tolist()
    row = [t for t in seen_inputs[0][0].tolist() if t != 0]  # left padding (to a multiple of 8) dropped
    assert row == [*tokens, recommender.vocab.mask]  # the last movie is kept, not overwritten
    assert seen_inputs[0][0, -1] == recommender.vocab.mask


def test_long_histories_keep_their_newest_movies_and_exclude_all_of_them(recommender, monkeypatch):
    user = int(recommender.user_index.index[np.argmax(recommender.histories.lengths)])
    history = recommender.user_history(user)  # catalogue rows, oldest first
    max_len = recommender.model.config.max_len
    assert len(history) > max_len
    seen_inputs = model_inputs(recommender, monkeypatch)
    recs = recommender.recommend_user(user, k=50, filters=Filters())
    assert seen_inputs[0][0].tolist() == [*(history[-(max_len - 1):] + 1).tolist(), recommender.vocab.mask]
    watched = set(recommender.catalog.movies["item_id"].to_numpy()[history].tolist())
    assert len(recs.items) == 50 and not watched & set(ids(recs))  # movies older than the window too


def test_titles_and_ids_agree(recommender):
    by_title = recommender.recommend_titles(["toy story", "matrix"], k=10)
    by_id = recommender.recommend_history([1, 2571], k=10)
    assert ids(by_title) == ids(by_id)
    assert [h["title"] for h in by_title.history] == ["Toy Story (1995)", "Matrix, The (1999)"]
    assert set(by_title.items[0]) == {"movieId", "title", "year", "genres", "score"}
    scores = [item["score"] for item in by_title.items]
    assert scores == sorted(scores, reverse=True)


def test_cold_start_falls_back_to_popularity(recommender):
    recs = recommender.recommend_history([], k=5)
    assert recs.fallback == "popularity"
    most_popular = np.argsort(-recommender.catalog.popularity, kind="stable")[:5]
    assert ids(recs) == recommender.catalog.movies["item_id"].to_numpy()[most_popular].tolist()
    recs = recommender.recommend_history([-1, 10**12], k=5, ignore_unknown=True)
    assert recs.fallback == "popularity"
    assert recommender.recommend_history([1], k=5).fallback is None


def test_recommendations_compare_by_what_they_say(recommender):
    history = [1, 356, 296]
    same = recommender.recommend_history(history, k=5)
    assert same == recommender.recommend_history(history, k=5)
    assert same != recommender.recommend_history(history, k=4)
    assert same != recommender.recommend_history([1, 356], k=5)
    assert same != recommender.recommend_history([], k=5)
    assert same != same.to_dict()


def test_batch_equals_one_by_one(recommender):
    users = [int(u) for u in recommender.user_index.index[[0, 5, 17, 300]]]
    batch = recommender.recommend_users(users, k=7)
    assert len(batch) == 4 * 7
    for user in users:
        one = recommender.recommend_user(user, k=7)
        rows = batch[batch["userId"] == user].sort_values("rank")
        assert rows["movieId"].tolist() == ids(one)
        np.testing.assert_allclose(rows["score"].to_numpy(), [i["score"] for i in one.items], rtol=1e-5)
    everyone = recommender.recommend_users(None, k=3)
    assert everyone["userId"].nunique() == len(recommender.user_index)


def test_filters(recommender):
    recs = recommender.recommend_history([1], k=20, filters=Filters(genres=["horror"]))
    assert len(recs.items) == 20 and all("Horror" in item["genres"] for item in recs.items)
    recs = recommender.recommend_history([1], k=20, filters=Filters(year_min=1990, year_max=1995))
    assert len(recs.items) == 20 and all(1990 <= item["year"] <= 1995 for item in recs.items)
    recs = recommender.recommend_history([1], k=20, filters=Filters(include=[2, 3, 1]))
    assert sorted(ids(recs)) == [2, 3]  # 1 is seen
    top = ids(recommender.recommend_history([1], k=3))
    assert top[0] not in ids(recommender.recommend_history([1], k=3, filters=Filters(exclude=[top[0]])))


def test_bad_requests(recommender):
    with pytest.raises(UnknownUserError):
        recommender.recommend_user(10**9)
    with pytest.raises(UnknownItemError):
        recommender.recommend_history([1, 10**9])
    for k in (0, -3, 10**6):
        with pytest.raises(InvalidRequestError):
            recommender.recommend_history([1], k=k)
    with pytest.raises(UnknownUserError):
        recommender.recommend_users([1, 10**9])


def test_scores_match_a_reloaded_model(recommender, tiny_model_dir):
    again = Recommender.load(tiny_model_dir)
    assert recommender.recommend_user(1, 10).items == again.recommend_user(1, 10).items


def test_broken_model_folders(tiny_model_dir, tmp_path):
    with pytest.raises(ModelFolderError, match="no such model folder"):
        Recommender.load(tmp_path / "missing")
    broken = tmp_path / "broken"
    shutil.copytree(tiny_model_dir, broken)
    (broken / "dataset" / "vocab.json").unlink()
    with pytest.raises(ModelFolderError, match="vocab"):
        Recommender.load(broken)
    shutil.rmtree(broken)
    shutil.copytree(tiny_model_dir, broken)
    config = json.loads((broken / "config.json").read_text())
    (broken / "config.json").write_text(json.dumps(config | {"version": 0}))
    record_digests(broken, ["config.json"])  # as a bert4rec of another format version would have written it
    with pytest.raises(ModelFolderError, match="incompatible"):
        Recommender.load(broken)


def test_serving_does_not_import_training_code():
    import subprocess
    import sys

    code = ("import sys, bert4rec.serving.app; "
            "bad = [m for m in sys.modules if m.startswith(('bert4rec.training', 'bert4rec.cli'))]; "
            "print(bad); sys.exit(1 if bad else 0)")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True).returncode == 0


def test_history_types_pack_ratings_and_gaps():
    types = history_types(3, [5, None, 2.5], [100, 100, 200])
    assert [part.tolist() for part in unpacked(types)] == [[5, UNRATED, 2], [GAP_FIRST, 2, 5]]
    assert unpacked(history_types(2))[1].tolist() == [GAP_UNKNOWN, GAP_UNKNOWN]
    with pytest.raises(InvalidRequestError, match="for every movie"):
        history_types(2, None, [100, None])
    with pytest.raises(InvalidRequestError, match="back in time"):
        history_types(2, None, [100, 99])


def test_skipped_unknown_movies_take_their_ratings_and_times_along(recommender, monkeypatch):
    received = []
    monkeypatch.setattr(recommender, "recommend_rows", lambda rows, k, filters, types: received.append(types))
    recommender.recommend_history([1, 10**9, 296], ratings=[4, 1, None], timestamps=[0, 5, 60], ignore_unknown=True)
    assert [part.tolist() for part in unpacked(received[0])] == [[4, UNRATED], [GAP_FIRST, 4]]
    with pytest.raises(InvalidRequestError, match="2 timestamps for 3 movies"):
        recommender.recommend_history([1, 2, 3], timestamps=[0, 5])
