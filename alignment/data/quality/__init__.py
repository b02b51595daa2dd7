"""Data-quality checks over the whole set: near-duplicates, drift between versions."""
