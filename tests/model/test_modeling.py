from __future__ import annotations

import json

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from bert4rec.data.token_types import packed
from bert4rec.errors import Bert4RecError
from bert4rec.model.config import Bert4RecConfig
from bert4rec.model.inputs import IGNORE
from bert4rec.model.modeling import Bert4Rec, BitsDropout

TINY = dict(num_items=30, hidden_size=16, num_layers=1, num_heads=2, intermediate_size=32, max_len=8,
            rating_aware=False)


def tiny_model(**overrides) -> Bert4Rec:
    torch.manual_seed(0)
    return Bert4Rec(Bert4RecConfig(**(TINY | overrides))).eval()


def test_defaults_are_the_papers_ml1m_setup():
    config = Bert4RecConfig(num_items=3416)
    assert (config.hidden_size, config.num_layers, config.num_heads, config.intermediate_size) == (64, 2, 2, 256)
    assert (config.dropout, config.max_len, config.vocab_size, config.mask_token) == (0.2, 200, 3418, 3417)


def test_shapes_and_tied_output():
    model = tiny_model()
    inputs = torch.tensor([[0, 0, 3, 4, 31], [1, 2, 3, 4, 31]])
    assert model.encode(inputs).shape == (2, 5, 16)
    assert model.score_last(inputs).shape == (2, 30)  # items only: PAD and MASK have no column
    names = [n for n, _ in model.named_parameters()]
    assert not any("decoder" in n for n in names), "output layer is tied to the item embeddings"


def test_loss_only_at_masked_positions_equals_full_cross_entropy():
    model = tiny_model()
    inputs = torch.tensor([[0, 5, 31, 7], [2, 31, 31, 9]])
    labels = torch.tensor([[IGNORE, IGNORE, 6, IGNORE], [IGNORE, 3, 4, IGNORE]])
    loss = model(inputs, labels)
    hidden = model.encode(inputs)
    all_scores = model.item_scores(hidden.reshape(-1, 16))  # (B*L, N): what BertForMaskedLM would build
    expected = F.cross_entropy(all_scores[labels.reshape(-1) != IGNORE], labels[labels != IGNORE] - 1)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_exclude_seen_leaves_each_targets_window_mates_out_of_its_softmax():
    model = tiny_model()
    inputs = torch.tensor([[0, 5, 31, 7], [2, 31, 31, 9]])
    labels = torch.tensor([[IGNORE, IGNORE, 6, IGNORE], [IGNORE, 3, 4, IGNORE]])
    scores = model.item_scores(model.encode(inputs)[labels != IGNORE])  # (3, N) for targets 6, 3, 4
    left_out = [[5, 7], [2, 9, 4], [2, 9, 3]]  # item tokens; column = token - 1
    for row, items in enumerate(left_out):
        scores[row, [i - 1 for i in items]] = float("-inf")
    expected = F.cross_entropy(scores, torch.tensor([6, 3, 4]) - 1)
    assert model(inputs, labels, exclude_seen=True).item() == pytest.approx(expected.item(), rel=1e-5)
    assert model(inputs, labels, exclude_seen=True) < model(inputs, labels)


def test_padding_width_does_not_change_scores():
    """Position ids count from the end, so a batch padded to max_len and a cropped one agree."""
    model = tiny_model()
    short = torch.tensor([[3, 4, 31]])
    padded = torch.tensor([[0, 0, 0, 0, 0, 3, 4, 31]])
    torch.testing.assert_close(model.score_last(short), model.score_last(padded), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("layers", [1, 2, 3])
def test_the_encoder_computes_what_bert_model_forward_does(layers):
    model = tiny_model(num_layers=layers)
    inputs = torch.tensor([[0, 0, 0, 3, 4, 31], [1, 2, 3, 4, 5, 31], [0, 0, 0, 0, 0, 31]])
    from_end = torch.arange(inputs.shape[1], 0, -1).expand_as(inputs)
    with torch.no_grad():
        reference = model.bert(input_ids=inputs, attention_mask=(inputs != 0).long(),
                               position_ids=model.config.max_len - from_end).last_hidden_state
        torch.testing.assert_close(model.encode(inputs), reference, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("layers", [1, 2, 3])
def test_scoring_the_last_position_alone_equals_encoding_every_position(layers):
    model = tiny_model(num_layers=layers, num_heads=4)
    torch.manual_seed(1)
    inputs = torch.randint(1, 31, (5, 8))
    inputs[:, -1] = 31
    inputs[1, :5] = 0
    inputs[2, :7] = 0  # [MASK] alone
    with torch.no_grad():
        expected = model.item_scores(model.encode(inputs)[:, -1])
        torch.testing.assert_close(model.score_last(inputs), expected, rtol=1e-5, atol=1e-5)


def test_a_row_of_padding_alone_stays_finite_and_keeps_gradients_finite():
    model = tiny_model().train()
    inputs = torch.tensor([[0, 0, 0, 0], [2, 31, 31, 9]])
    labels = torch.tensor([[IGNORE] * 4, [IGNORE, 3, 4, IGNORE]])
    assert torch.isfinite(model.encode(inputs)).all()
    model(inputs, labels).backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_too_long_input_is_rejected():
    with pytest.raises(Bert4RecError, match="exceeds"):
        tiny_model().encode(torch.ones(1, 9, dtype=torch.long))


def test_save_load_round_trip_gives_identical_scores(tmp_path):
    model = tiny_model()
    model.save(tmp_path)
    back = Bert4Rec.load(tmp_path).eval()
    inputs = torch.tensor([[1, 2, 3, 31]])
    assert torch.equal(model.score_last(inputs), back.score_last(inputs))
    assert json.loads((tmp_path / "config.json").read_text())["format"] == "bert4rec-model"


@pytest.mark.filterwarnings("ignore:.*no SHA-256 recorded")
def test_corrupt_and_mismatched_folders(tmp_path):
    with pytest.raises(Bert4RecError, match="missing; not a bert4rec model folder"):
        Bert4Rec.load(tmp_path)
    tiny_model().save(tmp_path)
    weights = tmp_path / "model.safetensors"
    good = weights.read_bytes()
    weights.write_bytes(good[: len(good) // 2])
    with pytest.raises(Bert4RecError, match=r"model\.safetensors: contents changed"):
        Bert4Rec.load(tmp_path)
    # Without recorded digests (a folder from an older bert4rec), the formats' own checks still name the problem.
    (tmp_path / "digests.json").unlink()
    with pytest.raises(Bert4RecError, match="corrupt or unreadable weights"):
        Bert4Rec.load(tmp_path)
    weights.write_bytes(good)
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps(config | {"hidden_size": 32, "intermediate_size": 64}))
    with pytest.raises(Bert4RecError, match="has shape"):
        Bert4Rec.load(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps(config | {"version": 99}))
    with pytest.raises(Bert4RecError, match="incompatible"):
        Bert4Rec.load(tmp_path)
    weights.unlink()
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(Bert4RecError, match="missing model weights"):
        Bert4Rec.load(tmp_path)


def test_each_model_reads_only_the_token_type_parts_it_was_trained_on():
    rating, gap = torch.tensor([[0, 3, 5, 7]]), torch.tensor([[0, 1, 2, 8]])
    types = packed(rating, gap)
    plain = Bert4RecConfig(num_items=5, rating_aware=False)
    rating_only = Bert4RecConfig(num_items=5, rating_aware=True)
    time_only = Bert4RecConfig(num_items=5, rating_aware=False, time_aware=True)
    both = Bert4RecConfig(num_items=5, rating_aware=True, time_aware=True)
    assert (plain.num_token_types, rating_only.num_token_types, time_only.num_token_types) == (1, 9, 9)
    assert both.num_token_types == 81
    assert rating_only.own_types(types).tolist() == rating.tolist()
    assert time_only.own_types(types).tolist() == gap.tolist()
    assert both.own_types(types).tolist() == types.tolist()
    assert not plain.reads_types and rating_only.reads_types and time_only.reads_types


def test_time_aware_model_ignores_ratings_and_a_plain_model_ignores_types():
    model = tiny_model(time_aware=True).eval()
    ids = torch.randint(1, 31, (2, 8))
    with torch.no_grad():
        rated = model.score_last(ids, packed(torch.full((2, 8), 5), torch.full((2, 8), 3)))
        unrated = model.score_last(ids, packed(torch.zeros(2, 8, dtype=torch.long), torch.full((2, 8), 3)))
        other_gaps = model.score_last(ids, packed(torch.zeros(2, 8, dtype=torch.long), torch.full((2, 8), 8)))
        assert torch.equal(rated, unrated) and not torch.allclose(rated, other_gaps)
        plain = tiny_model().eval()
        assert torch.equal(plain.score_last(ids), plain.score_last(ids, torch.full((2, 8), 40)))


def test_configs_written_before_time_aware_models_still_load(tmp_path):
    old = {k: v for k, v in TINY.items() if k != "rating_aware"}  # a config of that time had no such key
    config = {"format": "bert4rec-model", "version": 1, **old, "num_token_types": 9}
    (tmp_path / "config.json").write_text(json.dumps(config))
    loaded = Bert4RecConfig.load(tmp_path)
    assert loaded.rating_aware and not loaded.time_aware
    (tmp_path / "config.json").write_text(json.dumps(config | {"num_token_types": 1}))
    assert not Bert4RecConfig.load(tmp_path).rating_aware


def test_bits_dropout_keeps_one_minus_p_independently_and_scales_what_it_keeps():
    dropout = BitsDropout(0.2)
    x = torch.ones(999, 1001, requires_grad=True)  # a count that is not a multiple of the 4 masks per draw
    torch.manual_seed(0)
    y = dropout(x)
    kept = y != 0
    assert kept.float().mean().item() == pytest.approx(0.8, abs=0.002)
    assert (kept[:, 1:] & kept[:, :-1]).float().mean().item() == pytest.approx(0.64, abs=0.002)  # neighbours
    assert torch.all(y[kept] == 1.25)
    y.sum().backward()
    assert torch.equal(x.grad, y.detach())  # the gradient flows through the kept elements, scaled alike
    torch.manual_seed(0)
    assert torch.equal(dropout(x), y), "the same seed draws the same mask"
    assert torch.equal(dropout.eval()(x), x)
    assert torch.equal(BitsDropout(0.0).train()(x), x)


def test_the_encoder_drops_out_with_bits_dropout():
    model = tiny_model(dropout=0.2).train()
    assert {type(m) for m in model.modules() if isinstance(m, nn.Dropout)} == {BitsDropout}
    inputs = torch.tensor([[1, 2, 3, 4, 31]])
    assert not torch.equal(model.encode(inputs), model.encode(inputs))
    model.eval()
    assert torch.equal(model.encode(inputs), model.encode(inputs))


# ------------------------------------------------------------------------------------ catalogue features

FEATURED = dict(genre_aware=True, year_aware=True, genres=["Comedy", "Drama", "Horror"])


def featured_model() -> Bert4Rec:
    model = tiny_model(**FEATURED)
    genres = torch.zeros(30, 3)
    genres[0] = torch.tensor([0.5, 0.5, 0])  # item 1 (column 0): Comedy and Drama
    genres[1, 2] = 1  # item 2: Horror
    years = torch.arange(30) % 28
    model.set_item_features(genres, years)
    return model


def test_a_feature_aware_models_items_add_the_mean_of_their_genres_and_their_year_on_both_sides():
    model = featured_model()
    words, genre, year = (model.bert.embeddings.word_embeddings.weight, model.genre_embeddings.weight,
                          model.year_embeddings.weight)
    items = model.item_embeddings()
    torch.testing.assert_close(items[0], words[1] + (genre[0] + genre[1]) / 2 + year[0])
    torch.testing.assert_close(items[1], words[2] + genre[2] + year[1])
    torch.testing.assert_close(items[5], words[6] + year[5])  # no genre read
    # The input side reads the same sums: with the movie's own embedding moved into its year, nothing changes.
    inputs = torch.tensor([[0, 0, 3, 4, 31], [1, 2, 3, 4, 31]])
    before = model.score_last(inputs)
    with torch.no_grad():
        model.year_embeddings.weight[0] += 1.0
        words[1] -= 1.0
    torch.testing.assert_close(model.score_last(inputs), before)


def test_genre_and_year_parts_change_the_scores_of_a_feature_aware_model():
    model = featured_model()
    inputs = torch.tensor([[0, 0, 3, 4, 31]])
    before = model.score_last(inputs)
    with torch.no_grad():
        model.genre_embeddings.weight[2] += torch.randn(16)  # Horror: item 2 only (not a constant: LayerNorm)
    after = model.score_last(inputs)
    assert not torch.allclose(after[:, 1], before[:, 1])
    torch.testing.assert_close(after[:, 5:], before[:, 5:])  # movies with no genre keep theirs


def test_features_are_saved_with_the_weights_and_a_plain_model_has_none(tmp_path):
    model = featured_model()
    model.save(tmp_path)
    loaded = Bert4Rec.load(tmp_path).eval()
    assert loaded.config.genres == FEATURED["genres"]
    torch.testing.assert_close(loaded.item_genres, model.item_genres)
    inputs = torch.tensor([[1, 2, 3, 4, 31]])
    torch.testing.assert_close(loaded.score_last(inputs), model.score_last(inputs))
    assert not {"item_genres", "item_years"} & set(tiny_model().state_dict())


def test_features_must_be_given_as_the_model_reads_them():
    with pytest.raises(Bert4RecError, match="needs its genre vocabulary"):
        tiny_model(genre_aware=True)
    with pytest.raises(Bert4RecError, match="item_years: given False"):
        tiny_model(year_aware=True).set_item_features(None, None)
    with pytest.raises(Bert4RecError, match="item_genres: given True"):
        tiny_model().set_item_features(torch.zeros(30, 2), None)
