"""Training: the settings and recipes, the training windows, one loop with checkpoints and exact resume, and
data-parallel launch under torchrun or accelerate."""
