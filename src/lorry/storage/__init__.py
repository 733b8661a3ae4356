"""Storage backends: each implements the Store contract in base.py."""
