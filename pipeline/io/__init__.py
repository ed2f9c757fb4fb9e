"""Shard files: atomic writer, manifest, reader."""
