"""Alignment as an operated process: preference data in, a promoted model out."""

__version__ = "0.1.0"
