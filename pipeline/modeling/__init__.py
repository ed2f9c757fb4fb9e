"""What capture and train share about a causal LM's head: model-specific logit transforms."""
