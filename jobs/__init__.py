"""Thin job entry points: `python -m jobs.<name> CONFIG key=value ...`."""
