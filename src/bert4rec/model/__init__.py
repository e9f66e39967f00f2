"""The model: its config, the BERT encoder with the masked-LM item head, the cloze losses, the inputs it reads
and batched scoring. Imports numpy and torch, never pandas."""
