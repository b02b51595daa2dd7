"""Helpers of the tests that answer a paused Prefect flow run (imported by name)."""

from __future__ import annotations

import time


def paused_run_id(flow_name: str, deadline: float):
    """The id of a paused run of ``flow_name``, waiting for one until ``deadline`` (monotonic)."""
    from prefect import get_client
    from prefect.client.schemas.filters import (
        FlowFilter,
        FlowFilterName,
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType

    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            runs = client.read_flow_runs(
                flow_filter=FlowFilter(name=FlowFilterName(any_=[flow_name])),
                flow_run_filter=FlowRunFilter(
                    state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.PAUSED]))
                ),
            )
            if runs:
                return runs[0].id
            time.sleep(0.5)
    raise AssertionError(f"{flow_name} never paused for a person's answer")
