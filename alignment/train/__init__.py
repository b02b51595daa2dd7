"""Training jobs: launch (orchestrator side, no torch) and entry (process side)."""
