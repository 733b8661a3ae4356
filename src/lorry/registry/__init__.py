"""Versions, aliases, lineage and runs, kept as small records on a Store."""
