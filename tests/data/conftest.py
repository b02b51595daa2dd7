"""Shared fixtures for the data tests."""

from __future__ import annotations

import os

import pytest
from data_helpers import conv

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")


@pytest.fixture
def good_rows() -> list[dict]:
    return [conv(f"What is {i} plus 1?", f"It is {i + 1}.", f"It is {i + 2}.") for i in range(10)]
