"""Capture: teacher-forced forward passes that write top-k logit shards."""
