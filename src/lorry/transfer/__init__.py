"""Moving bytes between files and stores: scheduling, hashing, uploads and downloads."""
