"""Streamed chat completions: the shared state (`StreamState`), the sync and async streams."""
