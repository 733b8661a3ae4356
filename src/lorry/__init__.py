"""lorry: version datasets, models and results as artifacts."""
