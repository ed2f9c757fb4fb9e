"""Publishing shard sets as Hugging Face Hub datasets."""
