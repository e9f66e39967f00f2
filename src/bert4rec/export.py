"""ONNX export of the scoring path (history + [MASK] -> item scores) and an ONNX Runtime scorer.

Needs the ``onnx`` extra: ``pip install 'bert4rec[onnx]'`` (onnx, onnxruntime, onnxscript).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from bert4rec.errors import Bert4RecError
from bert4rec.fsutil import atomic_write
from bert4rec.model import Bert4Rec

ONNX_FILE = "model.onnx"


class _LastItemScores(torch.nn.Module):
    def __init__(self, model: Bert4Rec):
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.model.score_last(input_ids)


def export_onnx(model_dir: str | Path, out: str | Path | None = None) -> Path:
    """Write ``model.onnx``: input ``input_ids`` (batch, length ≤ max_len, right-aligned, ending in [MASK]),
    output ``scores`` (batch, items). Batch and length are dynamic."""
    try:
        from torch.export import Dim
    except ImportError as exc:  # pragma: no cover - torch always has it from 2.1
        raise Bert4RecError(f"ONNX export needs torch.export ({exc})") from None
    model = Bert4Rec.load(model_dir).eval()
    config = model.config
    if config.reads_types:
        raise Bert4RecError("ONNX export of a rating- or time-aware model is not supported yet (its graph would "
                            "need the token types as a second input); serve it with `bert4rec serve`")
    out = Path(out) if out is not None else Path(model_dir) / ONNX_FILE
    example = torch.randint(1, config.num_items + 1, (2, min(16, config.max_len)))
    example[0, :2] = 0  # padding present, so the attention mask is part of the traced graph
    shapes = ({0: Dim("batch", max=1 << 16), 1: Dim("length", min=2, max=config.max_len)},)
    try:
        program = torch.onnx.export(_LastItemScores(model).eval(), (example,), dynamo=True, dynamic_shapes=shapes,
                                    input_names=["input_ids"], output_names=["scores"], verbose=False)
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

    def score_last(self, input_ids: np.ndarray) -> np.ndarray:
        return self.session.run(["scores"], {"input_ids": np.asarray(input_ids, dtype=np.int64)})[0]
