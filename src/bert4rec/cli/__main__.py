"""``python -m bert4rec.cli``, as launchers such as torchrun run the command."""

from bert4rec.cli import main

main()
