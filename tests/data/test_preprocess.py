from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from bert4rec.data import movielens, preprocess
from bert4rec.data.leave_one_out import TEST, TRAIN, VALID
from bert4rec.data.movielens import RawDataset
from bert4rec.data.preprocess import PrepareParams
from bert4rec.data.vocab import ItemVocab
from bert4rec.errors import Bert4RecError, DataError


def raw_from(rows: list[tuple[int, int, float, int]]) -> RawDataset:
    ratings = pd.DataFrame(rows, columns=["user_id", "item_id", "rating", "timestamp"])
    ratings["rating"] = ratings["rating"].astype(np.float32)
    return RawDataset(ratings, movielens.placeholder_movies(ratings["item_id"].to_numpy()), "test")


NO_FILTER = PrepareParams(min_user_interactions=1, min_item_interactions=1)


def test_timestamp_ties_keep_source_order():
    # user 7 rated 30, 10, 20 at the same second: the file order is the sequence order, whatever the ids.
    ds = preprocess.prepare(raw_from([(7, 30, 5, 100), (7, 10, 4, 100), (7, 20, 3, 100), (7, 40, 1, 50)]),
                            NO_FILTER)
    assert ds.interactions["item_id"].tolist() == [40, 30, 10, 20]
    assert ds.interactions["rating"].tolist() == [1, 5, 4, 3]  # ratings travel with their items


def test_stable_sort_on_many_ties():
    rng = np.random.default_rng(0)
    n = 20_000
    rows = list(zip(rng.integers(0, 50, n), np.arange(n) % 997, np.ones(n), rng.integers(0, 5, n), strict=True))
    ds = preprocess.prepare(raw_from(rows), NO_FILTER)
    df = pd.DataFrame(rows, columns=["user_id", "item_id", "rating", "timestamp"])
    expected = df.sort_values(["user_id", "timestamp"], kind="stable")["item_id"].tolist()
    assert ds.interactions["item_id"].tolist() == expected


def test_leave_one_out_split_and_sequences():
    rows = [(1, i, 4, t) for t, i in enumerate([5, 6, 7, 8])] + [(2, 5, 4, 0), (2, 6, 4, 1)]
    ds = preprocess.prepare(raw_from(rows), NO_FILTER)
    assert ds.interactions["split"].tolist() == [TRAIN, TRAIN, VALID, TEST, TRAIN, TRAIN]
    assert ds.interactions["split"].dtype == np.int8  # the column type both engines write
    assert ds.eval_users().tolist() == [0]  # user 2 is too short to have both targets
    seqs = ds.sequences()
    assert seqs.offsets.tolist() == [0, 4, 6]
    assert ds.vocab.decode(seqs.user(0)).tolist() == [5, 6, 7, 8]
    assert ds.user_ids.tolist() == [1, 2]


def test_filters_are_counted_once_on_loaded_data():
    # item 9 has 2 interactions -> dropped; that leaves user 1 with 2 interactions but users are counted
    # on the loaded data (4), so user 1 stays.
    rows = [(1, 1, 5, 0), (1, 2, 5, 1), (1, 9, 5, 2), (1, 9, 5, 3), (2, 1, 5, 0), (2, 2, 5, 1), (3, 1, 5, 0)]
    ds = preprocess.prepare(raw_from(rows), PrepareParams(min_user_interactions=2, min_item_interactions=3))
    assert sorted(ds.user_ids.tolist()) == [1, 2]
    assert ds.vocab.item_ids.tolist() == [1]  # item 2 has only 2 interactions
    assert ds.stats["params"]["min_item_interactions"] == 3


def test_min_rating():
    rows = [(1, 1, 5, 0), (1, 2, 2, 1), (1, 3, 4, 2)]
    ds = preprocess.prepare(raw_from(rows), PrepareParams(min_rating=4, min_user_interactions=1,
                                                          min_item_interactions=1))
    assert ds.interactions["item_id"].tolist() == [1, 3]


def test_sample_users_keeps_whole_users(ml_latest_small):
    raw = movielens.load(ml_latest_small)
    full = preprocess.prepare(raw)
    sample = preprocess.prepare(raw, PrepareParams(sample_users=0.2, seed=3))
    assert sample.stats["num_users"] == round(0.2 * full.stats["num_users"])
    full_lengths = full.interactions.groupby("user_id").size()
    sample_lengths = sample.interactions.groupby("user_id").size()
    assert (sample_lengths == full_lengths.loc[sample_lengths.index]).all()
    again = preprocess.prepare(raw, PrepareParams(sample_users=0.2, seed=3))
    assert again.user_ids.tolist() == sample.user_ids.tolist()


def test_empty_after_filtering_is_a_clear_error():
    with pytest.raises(DataError, match="no interactions left after filtering"):
        preprocess.prepare(raw_from([(1, 1, 5, 0)]), PrepareParams())


def test_acceptance_counts_ml1m(ml_1m):
    stats = preprocess.prepare(movielens.load(ml_1m)).stats
    assert (stats["num_users"], stats["num_items"], stats["num_interactions"]) == (6040, 3416, 999_611)


def test_acceptance_counts_ml_latest_small(ml_latest_small):
    stats = preprocess.prepare(movielens.load(ml_latest_small)).stats
    assert (stats["num_users"], stats["num_items"], stats["num_interactions"]) == (610, 3650, 90_274)


def test_ml1m_split_matches_independent_pandas_reference(ml_1m):
    raw = movielens.load(ml_1m)
    ds = preprocess.prepare(raw)
    r = raw.ratings.copy()
    user_counts = r.groupby("user_id")["item_id"].transform("size")
    item_counts = r.groupby("item_id")["user_id"].transform("size")
    r = r[(user_counts >= 5) & (item_counts >= 5)]
    r = r.sort_values(["user_id", "timestamp"], kind="stable")
    last = r.groupby("user_id").tail(1)["item_id"].to_numpy()
    test = ds.interactions[ds.interactions["split"] == TEST]["item_id"].to_numpy()
    assert np.array_equal(last, test)


def test_save_load_round_trip(tmp_path, ml_latest_small):
    ds = preprocess.prepare(movielens.load(ml_latest_small))
    preprocess.save_prepared(ds, tmp_path / "prepared")
    back = preprocess.load_prepared(tmp_path / "prepared")
    pd.testing.assert_frame_equal(back.interactions, ds.interactions)
    assert back.vocab.item_ids.tolist() == ds.vocab.item_ids.tolist()
    assert back.user_ids.tolist() == ds.user_ids.tolist()
    assert back.movies["item"].tolist() == list(range(1, ds.vocab.num_items + 1))
    stats = json.loads((tmp_path / "prepared" / "stats.json").read_text())
    assert stats["params"] == {"min_rating": None, "min_user_interactions": 5, "min_item_interactions": 5,
                               "sample_users": None, "seed": 0}
    assert set(stats["sequence_length"]) >= {"p50", "p90", "mean"}


def test_failed_write_leaves_previous_output_untouched(tmp_path):
    out = tmp_path / "prepared"
    out.mkdir()
    (out / "keep.txt").write_text("old")

    def broken(tmp):
        (tmp / "half.parquet").write_text("partial")
        raise OSError("disk full")

    with pytest.raises(OSError):
        preprocess.write_dir_atomically(out, broken)
    assert [p.name for p in tmp_path.iterdir()] == ["prepared"]
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


def test_a_save_that_fails_midway_leaves_the_previous_prepared_folder(tmp_path, monkeypatch):
    out = tmp_path / "prepared"
    preprocess.save_prepared(preprocess.prepare(raw_from([(1, 5, 4, 0), (1, 6, 4, 1), (1, 7, 4, 2)]), NO_FILTER), out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def disk_full(*args):
        raise OSError("disk full")

    monkeypatch.setattr(preprocess, "write_metadata", disk_full)  # fails after the new interactions are written
    other = preprocess.prepare(raw_from([(2, 8, 3, 0), (2, 9, 3, 1)]), NO_FILTER)
    with pytest.raises(OSError, match="disk full"):
        preprocess.save_prepared(other, out)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["prepared"]


def test_load_prepared_rejects_other_versions(tmp_path):
    (tmp_path / "stats.json").write_text(json.dumps({"format": "bert4rec-prepared", "version": 99}))
    with pytest.raises(DataError, match="incompatible"):
        preprocess.load_prepared(tmp_path)


# ---------------------------------------------------------------------------------------- vocabulary


def test_vocab_layout_and_round_trip(tmp_path):
    vocab = ItemVocab.from_items(np.array([30, 10, 20, 10]))
    assert vocab.item_ids.tolist() == [10, 20, 30]
    assert (vocab.size, vocab.mask) == (5, 4)
    tokens = vocab.encode(np.array([30, 10]))
    assert tokens.tolist() == [3, 1]
    assert vocab.decode(tokens).tolist() == [30, 10]
    vocab.save(tmp_path / "vocab.json")
    assert ItemVocab.load(tmp_path / "vocab.json").item_ids.tolist() == [10, 20, 30]


@pytest.mark.parametrize(("item_ids", "message"), [
    ([], "a vocabulary needs at least one item id"),
    ([[1, 2]], "a vocabulary needs at least one item id"),
    ([2, 1], "vocabulary item ids must be unique and ascending"),
    ([1, 3, 3], "vocabulary item ids must be unique and ascending"),
])
def test_a_vocabulary_needs_unique_ascending_ids(item_ids, message):
    with pytest.raises(Bert4RecError, match=f"^{message}$"):
        ItemVocab(np.array(item_ids))
    assert ItemVocab(np.array([7])).num_items == 1 and ItemVocab.from_items([3, 1, 3]).item_ids.tolist() == [1, 3]


def test_vocab_rejects_unknown_and_special_tokens():
    vocab = ItemVocab.from_items(np.array([10, 20]))
    assert vocab.known(np.array([10, 15, 99])).tolist() == [True, False, False]
    with pytest.raises(Bert4RecError, match="unknown item id 15"):
        vocab.encode(np.array([10, 15]))
    for token in (0, vocab.mask, vocab.mask + 1, -1):
        with pytest.raises(Bert4RecError, match=r"^cannot decode PAD, MASK or an out-of-range token to an item id$"):
            vocab.decode(np.array([1, token]))
    assert vocab.decode([2, 1]).tolist() == [20, 10]  # any sequence of tokens


def test_vocab_file_errors(tmp_path):
    with pytest.raises(Bert4RecError, match=r"vocab\.json: vocabulary file is missing$"):
        ItemVocab.load(tmp_path / "vocab.json")
    for item_ids in (["a", "b"], None, [[1], [2, 3]]):
        (tmp_path / "vocab.json").write_text(json.dumps({"format": "bert4rec-vocab", "version": 1, "pad": 0,
                                                         "mask": 3, "item_ids": item_ids}))
        with pytest.raises(Bert4RecError, match=r"vocab\.json: malformed item_ids \("):
            ItemVocab.load(tmp_path / "vocab.json")
    (tmp_path / "vocab.json").write_text("{not json")
    with pytest.raises(Bert4RecError, match="unreadable"):
        ItemVocab.load(tmp_path / "vocab.json")
    (tmp_path / "vocab.json").write_text(json.dumps({"format": "bert4rec-vocab", "version": 1, "pad": 0,
                                                     "mask": 9, "item_ids": [1, 2]}))
    with pytest.raises(Bert4RecError, match="PAD/MASK"):
        ItemVocab.load(tmp_path / "vocab.json")
