"""Pure values: names, digests and manifests. Nothing here does I/O."""
