from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from bert4rec.cli import app
from bert4rec.data.token_types import MASK_ANY, mask_type
from bert4rec.errors import Bert4RecError
from bert4rec.model.inputs import inference_inputs
from bert4rec.serving.export import OnnxScorer, export_onnx
from bert4rec.serving.recommender import Recommender


def test_onnx_export_matches_pytorch_scores(tiny_model_dir, tmp_path):
    path = tmp_path / "model.onnx"
    result = CliRunner().invoke(app, ["export", str(tiny_model_dir), "--onnx", "--out", str(path)])
    assert result.exit_code == 0, result.output
    scorer = OnnxScorer(path)
    recommender = Recommender.load(tiny_model_dir)
    histories = [recommender.user_history(u) for u in recommender.user_index.index[:5]] + [np.array([0, 5])]
    expected = recommender.score_histories(histories).numpy()  # mixed lengths: padding and truncation included
    lengths = np.array([len(h) for h in histories])
    tokens = np.concatenate(histories) + 1
    inputs = inference_inputs(tokens, np.cumsum(lengths) - lengths, np.cumsum(lengths), 20, recommender.vocab.mask)
    got = scorer.score_last(inputs)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)
    assert (np.argsort(-got, 1)[:, :10] == np.argsort(-expected, 1)[:, :10]).all()


def test_export_errors(tmp_path, tiny_model_dir):
    (tmp_path / "bad.onnx").write_bytes(b"not onnx")
    with pytest.raises(Bert4RecError, match="not a loadable ONNX model"):
        OnnxScorer(tmp_path / "bad.onnx")
    result = CliRunner().invoke(app, ["export", str(tiny_model_dir)])
    assert result.exit_code == 2 and "--onnx" in result.output


def test_rating_and_time_aware_export_reads_token_types(tiny_aware_dir, tmp_path):
    scorer = OnnxScorer(export_onnx(tiny_aware_dir, tmp_path / "m.onnx"))
    recommender = Recommender.load(tiny_aware_dir)
    users = recommender.user_index.index[:4]
    histories = [recommender.user_history(u) for u in users]
    types = [recommender.user_types(u) for u in users]
    liked = [False, True, False, True]
    expected = recommender.score_histories(histories, types, liked).numpy()
    lengths = np.array([len(h) for h in histories])
    starts, ends = np.cumsum(lengths) - lengths, np.cumsum(lengths)
    inputs = inference_inputs(np.concatenate(histories) + 1, starts, ends, 20, recommender.vocab.mask)
    type_rows = inference_inputs(np.concatenate(types), starts, ends, 20, MASK_ANY)
    type_rows[:, -1] = mask_type(np.array(liked))
    np.testing.assert_allclose(scorer.score_last(inputs, type_rows), expected, rtol=1e-4, atol=1e-4)
    unknown = recommender.score_histories(histories).numpy()  # no types: unknown ratings and times
    np.testing.assert_allclose(scorer.score_last(inputs), unknown, rtol=1e-4, atol=1e-4)
    assert not np.allclose(expected, unknown, atol=1e-3)


def test_a_genre_and_year_aware_model_recommends_and_exports_from_its_saved_features(tiny_featured_dir, tmp_path):
    recommender = Recommender.load(tiny_featured_dir)
    config = recommender.model.config
    assert config.genre_aware and config.year_aware and "Comedy" in config.genres and "(no genres listed)" not in (
        config.genres)
    comedy = config.genres.index("Comedy")
    toy_story = recommender.catalog.row_of_id[1] + 1  # token of movie 1, Toy Story (1995): Adventure|...|Comedy|...
    assert recommender.model.item_genres[toy_story, comedy] == pytest.approx(1 / 5)
    assert recommender.model.item_years[toy_story] == 1 + (1995 - 1900) // 5
    histories = [recommender.user_history(u) for u in recommender.user_index.index[:3]]
    assert len(recommender.recommend_user(int(recommender.user_index.index[0]), k=5).items) == 5
    scorer = OnnxScorer(export_onnx(tiny_featured_dir, tmp_path / "m.onnx"))
    lengths = np.array([len(h) for h in histories])
    inputs = inference_inputs(np.concatenate(histories) + 1, np.cumsum(lengths) - lengths, np.cumsum(lengths), 20,
                              recommender.vocab.mask)
    np.testing.assert_allclose(scorer.score_last(inputs), recommender.score_histories(histories).numpy(),
                               rtol=1e-4, atol=1e-4)
