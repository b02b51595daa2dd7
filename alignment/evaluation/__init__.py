"""Evaluation of trained policies on held-out data."""
