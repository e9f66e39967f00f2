"""The public API: importable from the package, and the former module paths keep working."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

import bert4rec


def test_public_names_come_from_the_package():
    from bert4rec import Bert4Rec, Bert4RecConfig, Filters, Recommender, TrainConfig, fit, prepare
    from bert4rec.model.modeling import Bert4Rec as model_class
    from bert4rec.serving.recommender import Recommender as recommender_class

    assert Recommender is recommender_class and Bert4Rec is model_class
    assert callable(fit) and callable(prepare) and Filters().exclude_seen and TrainConfig().epochs > 0
    assert Bert4RecConfig(num_items=3).vocab_size == 5
    assert set(bert4rec.__all__) <= set(dir(bert4rec))
    with pytest.raises(AttributeError):
        bert4rec.no_such_name  # noqa: B018


def test_importing_the_package_stays_light():
    """``import bert4rec`` (what the CLI's error handling pulls in) loads neither torch nor pandas."""
    code = "import sys, bert4rec; print([m for m in ('torch', 'pandas') if m in sys.modules])"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "[]"


@pytest.mark.parametrize(("old", "new", "names"), [
    ("bert4rec.recommend", "bert4rec.serving.recommender", ["Recommender", "Filters", "history_types"]),
    ("bert4rec.export", "bert4rec.serving.export", ["OnnxScorer", "export_onnx"]),
])
def test_former_module_paths_still_work_with_a_deprecation_warning(old, new, names):
    sys.modules.pop(old, None)
    with pytest.warns(DeprecationWarning, match=new):
        module = importlib.import_module(old)
    current = importlib.import_module(new)
    assert all(getattr(module, name) is getattr(current, name) for name in names)
