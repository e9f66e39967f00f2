"""Progress for long work: live bars on a terminal, and on a file or a CI log (where a bar's redraws would pile up
as thousands of carriage returns) nothing but the plain lines that mark finished steps."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterable

from tqdm.auto import tqdm

# Bars must never stall a forked process (a data-loader worker, a test runner's child). tqdm's default lock is shared
# across processes, so one that dies holding it blocks every other process's next bar for ever; a thread lock is
# each process's own. And no monitor thread: it wakes every few seconds holding the lock, and a process forked at
# that moment would wait for a lock no thread of its own will release.
tqdm.set_lock(threading.RLock())
tqdm.monitor_interval = 0


def interactive() -> bool:
    """Whether progress goes somewhere that redraws a bar in place: a terminal, or a Jupyter notebook's output."""
    return sys.stderr.isatty() or type(sys.stderr).__module__.startswith("ipykernel")


def bar(iterable: Iterable | None = None, enabled: bool = True, **options) -> tqdm:
    """A tqdm bar, shown only when ``enabled`` and on a terminal."""
    return tqdm(iterable, disable=not (enabled and interactive()), **options)


def line(text: str, enabled: bool = True) -> None:
    """One finished step, as a plain line; on a terminal the bars say it already."""
    if enabled and not interactive():
        print(text, file=sys.stderr, flush=True)
