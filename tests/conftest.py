"""Shared fixtures. Servers are started once per test session, on 127.0.0.1, by the fixtures themselves."""

pytest_plugins = ["tests.fixtures_s3", "tests.fixtures_gcs"]
