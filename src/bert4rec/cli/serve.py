"""``bert4rec serve`` (the REST API and web page) and ``bert4rec export`` (ONNX)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from bert4rec.cli.main import ModelDirArgument, command, console
from bert4rec.errors import Bert4RecError


@command("serve")
def serve_command(
    model_dir: ModelDirArgument,
    host: Annotated[str, typer.Option(help="Address to bind; 127.0.0.1 keeps it on this machine.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    device: Annotated[str, typer.Option(help="cpu, cuda or mps.")] = "cpu",
    threads: Annotated[int | None, typer.Option(
        help="CPU threads for the model (default: PyTorch's). Leave cores for the event loop under load.")] = None,
) -> None:
    """Serve the REST API (docs at /docs) and the web page (at /) for a trained model."""
    from bert4rec.serving.app import serve

    if not 0 < port < 65536:
        raise Bert4RecError(f"--port must be between 1 and 65535, not {port}")
    console.print(f"serving {model_dir} on http://{host}:{port}  (API docs: http://{host}:{port}/docs)")
    serve(str(model_dir), host, port, device, threads)


@command("export")
def export_command(
    model_dir: ModelDirArgument,
    onnx: Annotated[bool, typer.Option("--onnx", help="Export to ONNX (the only format for now).")] = False,
    out: Annotated[Path | None, typer.Option(help="Output file (default MODEL_DIR/model.onnx).")] = None,
) -> None:
    """Export the scoring path (history + [MASK] -> item scores) for ONNX Runtime; needs bert4rec[onnx]."""
    from bert4rec.model.config import Bert4RecConfig
    from bert4rec.serving.export import export_onnx

    if not onnx:
        raise Bert4RecError("choose a format: --onnx")
    path = export_onnx(model_dir, out)
    types = " and 'token_type_ids' (the same shape)" if Bert4RecConfig.load(model_dir).reads_types else ""
    console.print(f"written {path} (input 'input_ids' [batch, length ≤ max_len]{types}, output 'scores' "
                  "[batch, items])")
