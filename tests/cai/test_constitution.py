"""Constitution load/validate/hash: clear errors that name file, principle and field."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import yaml

from alignment.constitution import (
    DEFAULT_CONSTITUTION,
    ConstitutionError,
    load_constitution,
    store_constitution,
)


def _tree() -> dict:
    return yaml.safe_load(DEFAULT_CONSTITUTION.read_text(encoding="utf-8"))


def _write(tmp_path: Path, tree: dict, name: str = "c.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(tree), encoding="utf-8")
    return path


def test_shipped_constitution_loads():
    c = load_constitution()
    names = [p.name for p in c.principles]
    assert {"serious-harm", "honesty", "non-evasive", "helpfulness"} <= set(names)
    assert len(c.hash) == 16 and c.examples
    for p in c.principles:
        assert p.critique_request and p.revision_request and p.comparison_question


def test_hash_follows_content_not_formatting(tmp_path):
    tree = _tree()
    a = load_constitution(_write(tmp_path, tree, "a.yaml"))
    # same content, other formatting and comments: same hash
    (tmp_path / "b.yaml").write_text(
        "# a comment\n" + yaml.safe_dump(tree, default_flow_style=True), encoding="utf-8"
    )
    assert load_constitution(tmp_path / "b.yaml").hash == a.hash
    tree["principles"][0]["revision_request"] += " Be brief."
    assert load_constitution(_write(tmp_path, tree, "c.yaml")).hash != a.hash


def test_missing_field_names_file_principle_and_field(tmp_path):
    tree = _tree()
    del tree["principles"][1]["comparison_question"]
    path = _write(tmp_path, tree)
    with pytest.raises(ConstitutionError) as err:
        load_constitution(path)
    msg = str(err.value)
    assert str(path) in msg
    assert "principle 'honesty'" in msg and "comparison_question" in msg


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (lambda t: t["principles"][0].update(critique_request="  "), "must not be empty"),
        (lambda t: t["principles"][0].update(colour="red"), "colour"),
        (lambda t: t["principles"].append(dict(t["principles"][0])), "used twice"),
        (lambda t: t.update(principles=[]), "principles"),
        (lambda t: t["examples"][0].update(principle="nope"), "'nope' is not one of"),
        (lambda t: t["principles"][2].update(name="Bad Name"), "principles[2]"),
    ],
)
def test_invalid_constitutions_are_refused(tmp_path, edit, expected):
    tree = _tree()
    edit(tree)
    with pytest.raises(ConstitutionError, match=None) as err:
        load_constitution(_write(tmp_path, tree))
    assert expected in str(err.value)


def test_unreadable_and_not_yaml(tmp_path):
    with pytest.raises(ConstitutionError, match="cannot read"):
        load_constitution(tmp_path / "absent.yaml")
    (tmp_path / "bad.yaml").write_text("principles: [\n", encoding="utf-8")
    with pytest.raises(ConstitutionError, match="not valid YAML"):
        load_constitution(tmp_path / "bad.yaml")
    (tmp_path / "list.yaml").write_text("- a\n", encoding="utf-8")
    with pytest.raises(ConstitutionError, match="mapping"):
        load_constitution(tmp_path / "list.yaml")


def test_sampling_is_seeded_and_stored_copy_round_trips(tmp_path):
    c = load_constitution()
    draw = [c.sample(random.Random(7)).name for _ in range(3)]
    assert draw == [c.sample(random.Random(7)).name for _ in range(3)]
    path = store_constitution(c, tmp_path / "constitutions")
    assert path.name == f"{c.hash}.yaml"
    assert load_constitution(path).hash == c.hash
