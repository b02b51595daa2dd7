"""Preference data: read any supported format, validate, split by prompt."""
