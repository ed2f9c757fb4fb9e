"""Train: Ray Train fusion loop, data loading and checkpoints."""
