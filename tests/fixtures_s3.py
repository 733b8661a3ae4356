"""Fixtures for the s3 servers (filled in with the s3 store)."""
