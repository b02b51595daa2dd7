"""Every leaf command of ``alignment`` takes --config/-c, --set and --workspace, as the README says."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from alignment.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]


def _children(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def leaf_commands(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> list[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    """(command words, parser) of every command that has no subcommands."""
    children = _children(parser)
    if not children:
        return [(path, parser)]
    return [
        leaf for name, child in children.items() for leaf in leaf_commands(child, (*path, name))
    ]


def _required_arguments(parser: argparse.ArgumentParser) -> list[str]:
    """Placeholder values for the arguments a command cannot run without."""
    argv: list[str] = []
    for action in parser._actions:
        value = str(sorted(action.choices)[0]) if action.choices else "x"
        if not action.option_strings and action.nargs not in ("?", "*"):
            argv.append(value)
        elif action.option_strings and action.required:
            argv += [action.option_strings[0], value]
    return argv


def test_the_walk_finds_every_command_group():
    words = {path[0] for path, _ in leaf_commands(build_parser())}
    assert {"demo", "flows", "data", "cai", "model", "models", "train", "oracle"} <= words
    leaves = {" ".join(path) for path, _ in leaf_commands(build_parser())}
    assert {"cai check", "oracle data", "oracle eval", "flows cai", "models promote"} <= leaves


@pytest.mark.parametrize(
    ("path", "leaf"),
    leaf_commands(build_parser()),
    ids=lambda v: " ".join(v) if isinstance(v, tuple) else "",
)
def test_every_leaf_command_takes_config_set_and_workspace(path, leaf):
    options = {s for action in leaf._actions for s in action.option_strings}
    assert {"--config", "-c", "--set", "--workspace"} <= options, " ".join(path)
    argv = [
        *path,
        *_required_arguments(leaf),
        "-c",
        "my.yaml",
        "--set",
        "cai.seed=3",
        "--set",
        "train.dpo.beta=0.2",
        "--workspace",
        "ws",
    ]
    args = build_parser().parse_args(argv)
    assert args.config == "my.yaml"
    assert args.set == ["cai.seed=3", "train.dpo.beta=0.2"]
    assert args.workspace == "ws"


def test_overrides_carry_set_then_workspace():
    from alignment.cli.common import overrides_from

    args = build_parser().parse_args(
        ["flows", "cai", "--set", "cai.seed=3", "--workspace", "ws", "--set", "cai.few_shot=0"]
    )
    assert overrides_from(args) == ["cai.seed=3", "cai.few_shot=0", "workspace.root=ws"]


def _alignment(*argv: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "alignment", *argv],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_cai_check_reads_the_constitution_the_config_names(tmp_path):
    """`cai check -c CONFIG` checks cai.constitution of that config; --set overrides it."""
    from alignment.constitution import load_constitution

    shipped = load_constitution()
    done = _alignment("cai", "check", "-c", "configs/demo.yaml", cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert shipped.hash in done.stdout

    other = tmp_path / "short.yaml"
    text = (ROOT / "configs" / "constitutions" / "default.yaml").read_text()
    other.write_text(text.replace(f"name: {shipped.name}", "name: my-rules", 1))
    out = tmp_path / "check.json"
    done = _alignment(
        "cai", "check", "-c", str(ROOT / "configs" / "demo.yaml"),
        "--set", f"cai.constitution={other}", "--workspace", str(tmp_path / "ws"),
        "--json", str(out), cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    checked = json.loads(out.read_text())
    assert checked["hash"] == load_constitution(other).hash != shipped.hash
    assert checked["name"] == "my-rules"

    # a config that does not validate is refused with its file named, before any work
    bad = tmp_path / "bad.yaml"
    bad.write_text("cai:\n  revision_rounds: 0\n")
    done = _alignment("cai", "check", "-c", str(bad), cwd=tmp_path)
    assert done.returncode != 0
    assert "bad.yaml" in done.stderr and "revision_rounds" in done.stderr
