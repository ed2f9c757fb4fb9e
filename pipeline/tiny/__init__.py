"""Tiny tokenizers and models the project builds itself (no downloads)."""
