"""Fixtures for the gcs servers (filled in with the gcs store)."""
