"""Which device to compute on: what was asked for, checked, or the best one present."""

from __future__ import annotations

import torch

from bert4rec.errors import Bert4RecError


def pick_device(requested: str = "auto") -> torch.device:
    """``auto``: CUDA, then Apple MPS, then the CPU; any other name must be a device that is there."""
    if requested != "auto":
        try:
            device = torch.device(requested)
        except RuntimeError as exc:
            raise Bert4RecError(f"unknown device '{requested}' ({exc})") from None
        if device.type == "cuda" and not torch.cuda.is_available():
            raise Bert4RecError("--device cuda requested but CUDA is not available")
        if device.type == "mps" and not torch.backends.mps.is_available():
            raise Bert4RecError("--device mps requested but Apple MPS is not available")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")
