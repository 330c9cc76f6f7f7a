"""Frontends turn a model format into the IR; nothing after them knows the source format."""
