"""Align: vocabulary maps and character-offset sequence alignment."""
