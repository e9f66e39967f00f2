"""ONNX export of the scoring path (history + [MASK] -> item scores) and an ONNX Runtime scorer.

Needs the ``onnx`` extra: ``pip install 'bert4rec[onnx]'`` (onnx, onnxruntime, onnxscript).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from bert4rec.data.token_types import MASK_ANY, NUM_GAP_TYPES, NUM_RATING_TYPES
from bert4rec.errors import Bert4RecError
from bert4rec.files import ONNX_FILE, atomic_write
from bert4rec.model.modeling import Bert4Rec


class _LastItemScores(torch.nn.Module):
    def __init__(self, model: Bert4Rec):
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        return self.model.score_last(input_ids, token_type_ids)


def export_onnx(model_dir: str | Path, out: str | Path | None = None) -> Path:
    """Write ``model.onnx``: input ``input_ids`` (batch, length ≤ max_len, right-aligned, ending in [MASK]) and,
    for a rating- or time-aware model, ``token_type_ids`` (the same shape, packed types: see ``token_types``);
    output ``scores`` (batch, items). Batch and length are dynamic."""
    try:
        from torch.export import Dim
    except ImportError as exc:  # pragma: no cover - torch always has it from 2.1
        raise Bert4RecError(f"ONNX export needs torch.export ({exc})") from None
    model = Bert4Rec.load(model_dir).eval()
    config = model.config
    out = Path(out) if out is not None else Path(model_dir) / ONNX_FILE
    example = torch.randint(1, config.num_items + 1, (2, min(16, config.max_len)))
    example[0, :2] = 0  # padding present, so the attention mask is part of the traced graph
    dims = {0: Dim("batch", max=1 << 16), 1: Dim("length", min=2, max=config.max_len)}
    inputs, names = (example,), ["input_ids"]
    if config.reads_types:
        inputs, names = (example, torch.randint(0, NUM_RATING_TYPES * NUM_GAP_TYPES, example.shape)), \
            ["input_ids", "token_type_ids"]
    try:
        program = torch.onnx.export(_LastItemScores(model).eval(), inputs, dynamo=True,
                                    dynamic_shapes=(dims,) * len(inputs), input_names=names,
                                    output_names=["scores"], verbose=False)
    except ImportError as exc:
        raise Bert4RecError(f"ONNX export needs the onnx extra: pip install 'bert4rec[onnx]' ({exc})") from None
    atomic_write(out, lambda path: program.save(str(path)))
    return out


class OnnxScorer:
    """Item scores from an exported model with ONNX Runtime, for serving without PyTorch's runtime overhead."""

    def __init__(self, path: str | Path, threads: int | None = None):
        try:
            import onnxruntime
        except ImportError:
            raise Bert4RecError("ONNX Runtime is not installed: pip install 'bert4rec[onnx]'") from None
        options = onnxruntime.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        try:
            self.session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types for unreadable files
            raise Bert4RecError(f"{path}: not a loadable ONNX model ({exc})") from None

        self.reads_types = "token_type_ids" in {i.name for i in self.session.get_inputs()}

    def score_last(self, input_ids: np.ndarray, token_type_ids: np.ndarray | None = None) -> np.ndarray:
        """(B, L) histories ending in [MASK] (and their packed token types, for a model that reads them; none
        given: unknown ratings and times, any movie asked for) -> (B, N) scores."""
        feeds = {"input_ids": np.asarray(input_ids, dtype=np.int64)}
        if self.reads_types:
            if token_type_ids is None:
                token_type_ids = np.zeros_like(feeds["input_ids"])
                token_type_ids[:, -1] = MASK_ANY
            feeds["token_type_ids"] = np.asarray(token_type_ids, dtype=np.int64)
        return self.session.run(["scores"], feeds)[0]
