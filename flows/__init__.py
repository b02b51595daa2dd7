"""Prefect flows: thin compositions of the library's stage functions."""
