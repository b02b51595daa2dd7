"""What every CLI command shares: overrides from --set and --workspace."""

from __future__ import annotations

import argparse

from alignment.cli.common import overrides_from


def test_overrides_are_the_set_values_then_the_workspace():
    args = argparse.Namespace(set=["train.dpo.beta=0.2"], workspace="/tmp/ws")
    assert overrides_from(args) == ["train.dpo.beta=0.2", "workspace.root=/tmp/ws"]
    assert overrides_from(argparse.Namespace(set=None, workspace=None)) == []
