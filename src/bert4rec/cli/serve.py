"""``bert4rec serve`` (the REST API and web page) and ``bert4rec export`` (ONNX)."""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Annotated

import typer

from bert4rec.cli.main import ModelDirArgument, command, console
from bert4rec.errors import Bert4RecError
from bert4rec.serving.swap import DEFAULT_MAX_DROP


class LogFormat(str, enum.Enum):
    text = "text"
    json = "json"


@command("serve")
def serve_command(
    model_dir: ModelDirArgument,
    host: Annotated[str, typer.Option(help="Address to bind; 127.0.0.1 keeps it on this machine.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    device: Annotated[str, typer.Option(help="cpu, cuda or mps.")] = "cpu",
    threads: Annotated[int | None, typer.Option(
        help="CPU threads for the model in each worker (default: PyTorch's, or the cores shared out among the "
             "workers). Leave cores for the event loop under load.")] = None,
    workers: Annotated[int, typer.Option(
        help="Server processes, each with its own copy of the model, taking turns on the port. With --db they share "
             "the store, so every worker sees every event at once; a reload or an added movie reaches them all, "
             "and /metrics sums over them.")] = 1,
    db: Annotated[str | None, typer.Option(
        "--db", help="An event store (made by `bert4rec db init`): POST /events records what users do, and their "
                     "recommendations follow it at once. A SQLite file or a PostgreSQL URL; $BERT4REC_DB is not "
                     "read here, so a store is always asked for explicitly.")] = None,
    api_keys_file: Annotated[Path | None, typer.Option(
        help="Keys that may write (one per line), besides $BERT4REC_API_KEYS; clients send "
             "'Authorization: Bearer KEY'.")] = None,
    open_writes: Annotated[bool, typer.Option(
        help="With --db and no keys: let anyone write, for a trial; the server then listens on 127.0.0.1 only.")]
    = False,
    read_key: Annotated[bool, typer.Option(
        help="Reads need a key too (a write key or one of $BERT4REC_READ_KEYS); /health/* never do.")] = False,
    log_format: Annotated[LogFormat, typer.Option(help="One line per request: text, or json.")] = LogFormat.text,
    watch: Annotated[float | None, typer.Option(
        help="Look at MODEL_DIR every this many seconds and make a new model there live, without a restart (point "
             "MODEL_DIR at a symlink that retraining flips). POST /admin/reload does it on demand, with a key from "
             "$BERT4REC_ADMIN_KEYS.")] = None,
    max_drop: Annotated[float, typer.Option(
        help="Refuse a new model whose recorded validation NDCG@10 is more than this share below the live "
             "model's (1: never refuse on it).")] = DEFAULT_MAX_DROP,
) -> None:
    """Serve the REST API (docs at /docs) and the web page (at /) for a trained model; with --db, record events
    and recommend from them; with --watch, pick up new models as they are written."""
    from bert4rec.serving.app import serve

    if not 0 < port < 65536:
        raise Bert4RecError(f"--port must be between 1 and 65535, not {port}")
    console.print(f"serving {model_dir} on http://{host}:{port}  (API docs: http://{host}:{port}/docs)")
    if not 0 <= max_drop <= 1:
        raise Bert4RecError(f"--max-drop is a share between 0 and 1, not {max_drop}")
    serve(str(model_dir), host, port, device, threads, db, api_keys_file, open_writes, read_key, log_format.value,
          watch, max_drop, workers)


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
