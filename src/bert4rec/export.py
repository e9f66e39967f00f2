"""Deprecated home of ONNX export, kept so that code written against it keeps working: import from
``bert4rec.serving.export`` instead."""

import warnings

from bert4rec.serving.export import OnnxScorer, export_onnx  # noqa: F401

warnings.warn("bert4rec.export is now bert4rec.serving.export", DeprecationWarning, stacklevel=2)
