"""Serving the registered policy: an HTTP endpoint that traces every answer and takes feedback.

``server`` answers and records, ``pairs`` turns consented feedback into preference data.
"""
