from pathlib import Path

import pytest

from alignment.config import load_config
from alignment.errors import ConfigError


def test_defaults_load_and_digest_is_stable():
    a, b = load_config(), load_config()
    assert a.train.methods == ["sft", "dpo"]
    assert a.digest() == b.digest()


def test_overrides_are_typed_and_change_the_digest():
    base = load_config()
    cfg = load_config(None, ["train.dpo.beta=0.25", "train.methods=[dpo]", "model.source=smollm2"])
    assert cfg.train.dpo.beta == 0.25
    assert cfg.train.methods == ["dpo"]
    assert cfg.model.source == "smollm2"
    assert cfg.digest() != base.digest()


@pytest.mark.parametrize(
    ("override", "fragment"),
    [
        ("train.dpo.bta=1", "train.dpo.bta"),
        ("train.dpo.beta=-1", "train.dpo.beta"),
        ("train.dpo.loss_type=magic", "train.dpo.loss_type"),
        ("train.ppo.lr_scheduler_type=linear", "train.ppo.lr_scheduler_type"),  # PPO's is constant
        ("no_equals_sign", "section.field=value"),
    ],
)
def test_bad_overrides_name_the_field(override, fragment):
    with pytest.raises(ConfigError) as err:
        load_config(None, [override])
    assert fragment in str(err.value)


def test_relative_paths_in_a_file_are_relative_to_the_file(tmp_path: Path):
    cfg_dir = tmp_path / "configs"
    cfg_dir.mkdir()
    (cfg_dir / "c.yaml").write_text("workspace:\n  root: ../ws\ningest:\n  input: data.jsonl\n")
    cfg = load_config(cfg_dir / "c.yaml")
    assert cfg.workspace.root == (tmp_path / "ws").resolve()
    assert cfg.ingest.input == (cfg_dir / "data.jsonl").resolve()


def test_unreadable_and_malformed_files_are_named(tmp_path: Path):
    with pytest.raises(ConfigError, match=r"missing\.yaml"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("- just\n- a list\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml"):
        load_config(bad)


def test_shipped_configs_are_valid():
    root = Path(__file__).resolve().parents[1]
    for path in sorted((root / "configs").glob("*.yaml")):
        cfg = load_config(path)
        if path.name.startswith("cai-"):  # CAI writes its own data from prompts
            assert cfg.cai.prompts is None or cfg.cai.prompts.exists(), path
            assert cfg.cai.sl_dataset != cfg.ingest.dataset != cfg.cai.rl_dataset, path
            continue
        assert cfg.ingest.input is not None and cfg.ingest.input.exists(), path
