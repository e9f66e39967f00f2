"""The protocol behind every published figure, pinned down on toy data with hand-written scorers."""

from __future__ import annotations

import hashlib
import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import shared

from bert4rec.data import movielens, preprocess
from bert4rec.data.movielens import RawDataset
from bert4rec.data.preprocess import PrepareParams, Sequences
from bert4rec.data.vocab import PAD
from bert4rec.errors import Bert4RecError
from bert4rec.evaluation import metrics
from bert4rec.evaluation.protocols import (
    EvalSet,
    check_evaluable,
    evaluate_folder,
    evaluate_liked,
    evaluate_model,
    evaluate_scorer,
    full_ranking_ranks,
    popularity_scorer,
    sample_negatives,
    sampled_ranks,
    training_popularity,
    update_metrics_file,
)
from bert4rec.evaluation.splits import trained_on
from bert4rec.model.config import Bert4RecConfig
from bert4rec.model.modeling import Bert4Rec
from bert4rec.model.scoring import model_scorer

MOVIES = [10, 20, 30, 40, 50, 60]  # tokens 1..6, score columns 0..5
HISTORIES = {1: [10, 20, 30, 40, 50], 2: [60, 50, 10], 3: [30, 20]}  # oldest first; user 3 is too short to test


@pytest.fixture(scope="module")
def toy():
    rows = [(user, movie, 4.0, time) for user, movies in HISTORIES.items() for time, movie in enumerate(movies)]
    ratings = pd.DataFrame(rows, columns=["user_id", "item_id", "rating", "timestamp"])
    ratings["rating"] = ratings["rating"].astype(np.float32)
    raw = RawDataset(ratings, movielens.placeholder_movies(ratings["item_id"].to_numpy()), "toy")
    return preprocess.prepare(raw, PrepareParams(min_user_interactions=1, min_item_interactions=1))


def recording_scorer(row: list[float], seen: list):
    """Scores every history with the same ``row`` (one score per movie of MOVIES) and records what it read."""

    def score(inputs: np.ndarray, types: np.ndarray | None) -> torch.Tensor:
        seen.extend(inputs.tolist())
        return torch.tensor(row, dtype=torch.float32).expand(len(inputs), -1).clone()

    return score


def read_histories(seen: list, dataset) -> list[list[int]]:
    """The movies of each recorded input, without padding, checking that each ends with [MASK]."""
    assert all(tokens[-1] == dataset.vocab.mask for tokens in seen)
    return [dataset.vocab.decode(np.array([t for t in tokens[:-1] if t != PAD])).tolist() for tokens in seen]


def test_validation_reads_the_training_items_and_ranks_the_validation_target(toy):
    seen = []
    result = evaluate_scorer(recording_scorer([0, 1, 2, 3, 4, 5], seen), toy, "valid", max_len=8, sampled=False)
    assert read_histories(seen, toy) == [[10, 20, 30], [60]]
    # user 1: 20 and 30 seen, 40 the target, 50 and 60 above it -> rank 2; user 2: 50 is the best of 10..50 -> 0
    assert result["users"] == 2
    assert result["full"]["HR@1"] == 0.5 and result["full"]["HR@5"] == 1.0
    assert result["full"]["NDCG@10"] == pytest.approx((1 / math.log2(4) + 1) / 2)
    assert result["full"]["MRR"] == pytest.approx((1 / 3 + 1) / 2)


def test_test_split_reads_the_validation_item_too_and_never_the_target(toy):
    seen = []
    result = evaluate_scorer(recording_scorer([0, 1, 2, 3, 4, 5], seen), toy, "test", max_len=8, sampled=False)
    histories = read_histories(seen, toy)
    assert histories == [[10, 20, 30, 40], [60, 50]]
    assert all(HISTORIES[user][-1] not in history for user, history in zip((1, 2), histories, strict=True))
    # user 1: only 60 above the target 50 -> rank 1; user 2: 60 and 50 seen, 20, 30, 40 above the target 10 -> 3
    assert result["full"]["HR@1"] == 0.0 and result["full"]["HR@5"] == 1.0
    assert result["full"]["MRR"] == pytest.approx((1 / 2 + 1 / 4) / 2)
    assert result["full"]["NDCG@10"] == pytest.approx((1 / math.log2(3) + 1 / math.log2(5)) / 2)


def test_a_long_history_is_cut_to_the_newest_items_but_all_of_it_is_excluded(toy):
    seen = []
    data = EvalSet.for_split(toy.sequences(), toy.eval_users(), "test")
    ranks = full_ranking_ranks(recording_scorer([9, 8, 7, 6, 5, 4], seen), data, max_len=3, mask_token=toy.vocab.mask)
    assert read_histories(seen, toy) == [[30, 40], [60, 50]]  # max_len - 1 newest items, then [MASK]
    # user 1 reads only 30 and 40, yet 10 and 20 (scored above the target 50) stay excluded: nothing above
    assert ranks.above.tolist() == [0, 0] and ranks.tied.tolist() == [0, 0]


def test_histories_without_token_types_rank_as_with_them_for_a_plain_scorer(toy):
    data = EvalSet.for_split(toy.sequences(), toy.eval_users(), "test")
    untyped = EvalSet(data.tokens, data.starts, data.ends, data.targets)  # no ratings or times known
    scorer = recording_scorer([0, 1, 2, 3, 4, 5], [])
    assert untyped.types is None
    ranks = [full_ranking_ranks(scorer, d, 8, toy.vocab.mask) for d in (untyped, data)]
    assert [r.above.tolist() for r in ranks] == [[1, 3], [1, 3]] and not ranks[0].tied.any()


def test_tied_scores_are_counted_as_the_expected_place(toy):
    data = EvalSet.for_split(toy.sequences(), toy.eval_users(), "valid")
    ranks = full_ranking_ranks(recording_scorer([1, 1, 1, 1, 1, 1], []), data, 8, toy.vocab.mask)
    assert ranks.above.tolist() == [0, 0] and ranks.tied.tolist() == [2, 4]  # 3 and 5 unseen candidates
    assert metrics.hit_rate(ranks, 1) == pytest.approx((1 / 3 + 1 / 5) / 2)


def test_most_popular_counts_training_items_only(toy):
    # training parts: user 1 10, 20, 30; user 2 60; user 3 (never held out) 30, 20
    assert training_popularity(toy).tolist() == [1, 2, 2, 0, 0, 1]
    data = EvalSet.for_split(toy.sequences(), toy.eval_users(), "test")
    ranks = full_ranking_ranks(popularity_scorer(training_popularity(toy)), data, 8, toy.vocab.mask)
    # user 1 (target 50, count 0): 60 above, nothing unseen tied; user 2 (target 10, count 1): 20, 30 above, 40 below
    assert ranks.above.tolist() == [1, 2] and ranks.tied.tolist() == [0, 0]


@pytest.fixture(scope="module")
def small():
    return preprocess.prepare(movielens.load(shared("ml-latest-small")))


def test_sampled_negatives_are_distinct_unseen_never_the_target_and_seeded(small):
    data = EvalSet.for_split(small.sequences(), small.eval_users(), "test")
    popularity = training_popularity(small)
    negatives = sample_negatives(data, popularity, 100, seed=0)
    assert negatives.shape == (len(data), 100)
    for row in range(len(data)):
        history = set(data.tokens[data.starts[row]:data.ends[row]] - 1)
        chosen = set(negatives[row].tolist())
        assert len(chosen) == 100 and not chosen & history and data.targets[row] not in chosen
    assert np.array_equal(negatives, sample_negatives(data, popularity, 100, seed=0))
    assert not np.array_equal(negatives, sample_negatives(data, popularity, 100, seed=1))
    # drawn by popularity: the negatives are more popular than the catalogue's average movie
    assert popularity[negatives].mean() > 1.5 * popularity.mean()


def test_a_user_who_saw_every_popular_movie_still_gets_negatives(toy):
    data = EvalSet.for_split(toy.sequences(), toy.eval_users(), "test")
    popularity = np.array([1.0, 1, 1, 1, 1, 0])  # only movie 60 (column 5) was never watched in training
    row = int(np.flatnonzero(data.targets == 4)[0])  # user 1: history 10..40, target 50; movie 60 is all that is left
    negatives = sample_negatives(data, popularity, 1, seed=0)
    assert negatives[row].tolist() == [5]
    assert all(n not in data.tokens[data.starts[r]:data.ends[r]] - 1 and n != data.targets[r]
               for r in range(len(data)) for n in negatives[r])


def test_sampled_negatives_are_pinned_to_the_seed(small):
    # The draws behind every published sampled figure: a change to the sampler that moves them shows here.
    data = EvalSet.for_split(small.sequences(), small.eval_users(), "test")
    negatives = sample_negatives(data, training_popularity(small), 100, seed=0)
    assert negatives[0, :8].tolist() == [1892, 83, 29, 2680, 3136, 1787, 2286, 1493]
    assert hashlib.sha256(negatives.astype("<i8").tobytes()).hexdigest() == (
        "d7a003558b5d60d324622ad96f5d924e99e7a57b5a9051f3218d7a3387f8b2ea")


def test_negatives_drawn_from_the_movies_left_are_distinct():
    # One user has watched 380 of 500 movies, every one that anybody watched: the 119 left (the target aside) are
    # never drawn by popularity, so all 100 negatives come from drawing among them.
    history = np.arange(380)
    data = EvalSet(history + 1, np.array([0]), np.array([380]), np.array([380]))
    popularity = np.zeros(500)
    popularity[history] = 1
    negatives = sample_negatives(data, popularity, 100, seed=0)[0]
    assert len(set(negatives.tolist())) == 100 and negatives.min() > 380


def test_sampled_rank_is_the_place_among_the_target_and_its_negatives(small):
    data = EvalSet.for_split(small.sequences(), small.eval_users(), "test")
    negatives = sample_negatives(data, training_popularity(small), 100, seed=0)
    row = np.random.default_rng(0).permutation(small.vocab.num_items).astype(np.float32)  # distinct scores
    ranks = sampled_ranks(recording_scorer(row.tolist(), []), data, negatives, 16, small.vocab.mask)
    expected = (row[negatives] > row[data.targets][:, None]).sum(1)
    assert np.array_equal(ranks.above, expected) and not ranks.tied.any()
    assert ranks.above.max() <= 100 and 0 < ranks.above.mean() < 100


def test_metrics_file_keeps_the_other_split(tmp_path):
    path = tmp_path / "metrics.json"
    update_metrics_file(path, "valid", {"full": {"NDCG@10": 0.1}})
    update_metrics_file(path, "test", {"full": {"NDCG@10": 0.2}})
    update_metrics_file(path, "test", {"full": {"NDCG@10": 0.3}})
    assert json.loads(path.read_text()) == {"valid": {"full": {"NDCG@10": 0.1}}, "test": {"full": {"NDCG@10": 0.3}}}
    assert path.read_text().startswith('{\n  "valid": {\n    "full"')  # indented for people to read
    for unusable in ("{not json", "[1, 2]"):  # replaced, not a reason to lose the new result
        path.write_text(unusable)
        update_metrics_file(path, "valid", {"users": 3})
        assert json.loads(path.read_text()) == {"valid": {"users": 3}}


def test_sampled_protocol_in_a_scorers_result(small):
    row = np.random.default_rng(1).permutation(small.vocab.num_items).astype(np.float32)
    result = evaluate_scorer(recording_scorer(row.tolist(), []), small, "test", max_len=16, num_negatives=50, seed=3)
    assert set(result) == {"full", "sampled_50", "users"} and result["users"] == len(small.eval_users())
    data = EvalSet.for_split(small.sequences(), small.eval_users(), "test")
    negatives = sample_negatives(data, training_popularity(small), 50, seed=3)
    expected = (row[negatives] > row[data.targets][:, None]).sum(1)
    assert result["sampled_50"] == metrics.summary(metrics.Ranks(expected))
    assert result["sampled_50"]["HR@10"] > result["full"]["HR@10"]  # 50 negatives are easier than every movie


@pytest.mark.parametrize(("holdout", "refused"), [("valid", []), ("test", ["valid"]), ("none", ["valid", "test"])])
def test_a_split_whose_targets_the_model_trained_on_is_refused(tmp_path, holdout, refused):
    (tmp_path / "train_config.json").write_text(json.dumps({"holdout": holdout}))
    for split in ("valid", "test"):
        assert trained_on(holdout, split) == (split in refused)
        if split in refused:
            with pytest.raises(Bert4RecError, match=f"trained on the {split} targets"):
                check_evaluable(tmp_path, split)
        else:
            check_evaluable(tmp_path, split)


def test_evaluability_errors_name_the_problem(tmp_path):
    with pytest.raises(Bert4RecError, match="unknown split 'train'"):
        check_evaluable(tmp_path, "train")
    check_evaluable(tmp_path, "valid")  # an exported model, without training settings: held out as by default
    (tmp_path / "train_config.json").write_text("{oops")
    with pytest.raises(Bert4RecError, match="unreadable training config"):
        check_evaluable(tmp_path, "test")
    (tmp_path / "train_config.json").write_text(json.dumps({"holdout": "everything"}))
    with pytest.raises(Bert4RecError, match="unknown holdout 'everything'"):
        check_evaluable(tmp_path, "test")
    with pytest.raises(Bert4RecError, match="unknown split 'train'"):
        EvalSet.for_split(Sequences(np.array([0]), np.array([], dtype=np.int64), np.array([]), np.array([])),
                          np.array([], dtype=np.int64), "train")


def model_folder_of(dataset, folder, **aware) -> Bert4Rec:
    torch.manual_seed(0)
    model = Bert4Rec(Bert4RecConfig(num_items=dataset.vocab.num_items, max_len=8, hidden_size=16, num_heads=2,
                                    num_layers=1, **aware))
    model.save(folder)
    preprocess.save_prepared(dataset, folder / "dataset")
    return model


def test_a_model_is_evaluated_beside_the_baseline_and_the_folder_keeps_the_result(tmp_path, toy):
    model = model_folder_of(toy, tmp_path, rating_aware=False)
    result = evaluate_model(model, toy, "test", sampled=False, progress=False)
    assert result["split"] == "test" and set(result) == {"split", "model", "most_popular"}
    scorer = popularity_scorer(training_popularity(toy))
    assert result["most_popular"] == evaluate_scorer(scorer, toy, "test", 8, sampled=False)
    assert result["model"] == evaluate_scorer(model_scorer(model), toy, "test", 8, sampled=False)
    stored = evaluate_folder(tmp_path, "valid", device="cpu", sampled=False, progress=False)
    assert stored["split"] == "valid" and stored["model"]["users"] == 2
    assert json.loads((tmp_path / "metrics.json").read_text()) == {"valid": stored}


def test_liked_targets_are_evaluated_asking_for_any_movie_and_for_a_liked_one(tmp_path):
    watched = [(10, 4.0), (20, 3.0), (30, 5.0)]  # then each user's test movie, liked by users 1, 3 and 5
    rows = [(user, movie, rating, time) for user in range(1, 7)
            for time, (movie, rating) in enumerate([*watched, (40 + user, 4.5 if user % 2 else 2.0)])]
    rows += [(9, movie, 3.0, time) for time, movie in enumerate(range(50, 90))]  # more movies to rank
    ratings = pd.DataFrame(rows, columns=["user_id", "item_id", "rating", "timestamp"])
    ratings["rating"] = ratings["rating"].astype(np.float32)
    raw = RawDataset(ratings, movielens.placeholder_movies(ratings["item_id"].to_numpy()), "liked")
    dataset = preprocess.prepare(raw, PrepareParams(min_user_interactions=1, min_item_interactions=1))
    model = model_folder_of(dataset, tmp_path, rating_aware=True)
    result = evaluate_liked(model, dataset, "test")
    assert result["users"] == 3
    assert set(result) == {"users", "ask_any", "ask_liked"} and result["ask_any"] != result["ask_liked"]
    assert set(result["ask_liked"]) == set(metrics.summary(metrics.Ranks(np.array([0]))))


# ---------------------------------------------------------------------------------------------- pinned details
# Each test below fails for a small change to protocols.py that mutation testing showed no other test noticed.


def test_errors_list_the_splits_and_a_config_without_holdout_held_out_the_default(tmp_path):
    for call in (lambda: check_evaluable(tmp_path, "train"),
                 lambda: EvalSet.for_split(Sequences(np.array([0]), np.array([], dtype=np.int64), np.array([]),
                                                     np.array([])), np.array([], dtype=np.int64), "train")):
        with pytest.raises(Bert4RecError, match=r"^unknown split 'train' \(choose from valid, test\)$"):
            call()
    (tmp_path / "train_config.json").write_text(json.dumps({"epochs": 3}))  # written before --holdout existed
    check_evaluable(tmp_path, "valid")
    check_evaluable(tmp_path, "test")


def test_popularity_is_counted_in_float64_and_scored_in_float32(toy):
    assert training_popularity(toy).dtype == np.float64
    scores = popularity_scorer(training_popularity(toy))(np.zeros((2, 3), dtype=np.int64), None)
    assert scores.dtype == torch.float32 and scores.shape == (2, 6)


def test_full_ranking_shows_progress_only_when_asked_and_honours_the_batch_size(toy, monkeypatch, capsys):
    monkeypatch.setattr("bert4rec.progress.interactive", lambda: True)  # as on a terminal
    data = EvalSet.for_split(toy.sequences(), toy.eval_users(), "test")
    seen = []
    full_ranking_ranks(recording_scorer([1, 2, 3, 4, 5, 6], seen), data, 8, toy.vocab.mask)
    assert "full ranking" not in capsys.readouterr().err
    calls = []

    def counting(inputs, types):
        calls.append(len(inputs))
        return torch.zeros(len(inputs), 6)

    full_ranking_ranks(counting, data, 8, toy.vocab.mask, batch_size=1, progress=True)
    assert calls == [1, 1] and "full ranking" in capsys.readouterr().err


def test_negatives_follow_popularity_to_the_last_item(toy):
    data = EvalSet.for_split(toy.sequences(), toy.eval_users(), "test")
    # Only the last movie (60) is popular, and user 1 has not seen it: it is their negative, every time.
    many = EvalSet(data.tokens, np.repeat(data.starts[:1], 300), np.repeat(data.ends[:1], 300),
                   np.repeat(data.targets[:1], 300))
    assert (sample_negatives(many, np.array([0, 0, 0, 0, 0, 1000.0]), 1, seed=0) == 5).all()


def test_the_catalogue_must_hold_enough_unseen_movies_for_the_negatives(toy):
    data = EvalSet.for_split(toy.sequences(), toy.eval_users(), "test")
    # user 1 has seen 4 of the 6 movies (and the target is a fifth): one movie is left to draw
    one = EvalSet(data.tokens, data.starts[:1], data.ends[:1], data.targets[:1])
    assert sample_negatives(one, np.ones(6), 1, seed=0).tolist() == [[5]]
    with pytest.raises(Bert4RecError, match=r"^the catalogue is too small for 2 sampled negatives per user$"):
        sample_negatives(one, np.ones(6), 2, seed=0)


def test_the_negatives_of_a_seed_are_pinned(small):
    # The published sampled figures depend on exactly these draws: any change to how they are drawn shows here.
    data = EvalSet.for_split(small.sequences(), small.eval_users()[:3], "test")
    negatives = sample_negatives(data, training_popularity(small), 5, seed=0)
    assert negatives.tolist() == PINNED_NEGATIVES


PINNED_NEGATIVES = [[1892, 83, 29, 2680, 3136], [42, 250, 2060, 1949, 1821], [1621, 1729, 774, 946, 3028]]


def test_sampled_ranks_read_types_ask_the_mask_and_keep_a_repeated_target(toy):
    # User 1 watches 20 again as the test target: the sampled protocol ranks it like any other movie.
    ratings = pd.DataFrame([(1, m, 4.0, t) for t, m in enumerate([10, 20, 30, 40, 20])] +
                           [(2, m, 4.0, t) for t, m in enumerate([50, 60, 10])],
                           columns=["user_id", "item_id", "rating", "timestamp"]).astype({"rating": np.float32})
    raw = RawDataset(ratings, movielens.placeholder_movies(ratings["item_id"].to_numpy()), "repeat")
    dataset = preprocess.prepare(raw, PrepareParams(min_user_interactions=1, min_item_interactions=1))
    data = EvalSet.for_split(dataset.sequences(), dataset.eval_users(), "test")
    data.mask_type = 7  # MASK_LIKED
    asked = []

    def reads_types(inputs, types):
        asked.extend(types[:, -1].tolist())
        return torch.tensor([[6.0, 5, 4, 3, 2, 1]] * len(inputs)) + torch.from_numpy(types.sum(1, keepdims=True))

    negatives = np.array([[0, 2], [1, 3]])
    ranks = sampled_ranks(reads_types, data, negatives, 8, dataset.vocab.mask, batch_size=1)
    assert asked == [7, 7]
    assert ranks.above.tolist() == [1, 0] and ranks.tied.tolist() == [0, 0]  # 20 below 10, above 30
    tied = sampled_ranks(lambda inputs, types: torch.zeros(len(inputs), 6), data, negatives, 8, dataset.vocab.mask)
    assert tied.above.tolist() == [0, 0] and tied.tied.tolist() == [2, 2]


def test_defaults_of_the_evaluation_entry_points(tmp_path, small, monkeypatch, capsys):
    monkeypatch.setattr("bert4rec.progress.interactive", lambda: True)
    row = np.random.default_rng(2).permutation(small.vocab.num_items).astype(np.float32).tolist()
    scorer = recording_scorer(row, [])
    default = evaluate_scorer(scorer, small, "test", 16)
    assert "full ranking" not in capsys.readouterr().err
    assert default == evaluate_scorer(scorer, small, "test", 16, True, 100, 0, progress=True)
    assert "full ranking" in capsys.readouterr().err and set(default) == {"full", "sampled_100", "users"}
    model = model_folder_of(small, tmp_path, rating_aware=False)
    result = evaluate_model(model, small)
    assert "full ranking" in capsys.readouterr().err
    assert result["split"] == "test"
    for name, score in (("model", model_scorer(model)), ("most_popular",
                                                           popularity_scorer(training_popularity(small)))):
        assert result[name] == evaluate_scorer(score, small, "test", 8, True, 100, 0)
    seeded = evaluate_model(model, small, seed=5, progress=False)
    assert seeded["most_popular"]["sampled_100"] == evaluate_scorer(
        popularity_scorer(training_popularity(small)), small, "test", 8, seed=5)["sampled_100"]
    assert seeded["model"]["sampled_100"] == evaluate_scorer(model_scorer(model), small, "test", 8,
                                                             seed=5)["sampled_100"]
    assert evaluate_folder(tmp_path) == result and "full ranking" in capsys.readouterr().err
    assert json.loads((tmp_path / "metrics.json").read_text()) == {"test": result}
    assert evaluate_folder(tmp_path, seed=5, progress=False) == seeded
