"""The registry page as an ops person sees it, in headless Chromium against a real MLflow server:
a version shows its gate decision and at most five headline figures, and its description says
what made it and what the gate decided."""

from __future__ import annotations

import html
import importlib.util
import re
from pathlib import Path

import pytest

from alignment import promotion, registry
from alignment.workspace import Workspace

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def _page_module():
    spec = importlib.util.spec_from_file_location("registry_page", ROOT / "infra/registry_page.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _text(page: str) -> str:
    return html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", page)))


def test_the_registry_page_reads_at_a_glance(tmp_path: Path, tiny_model_dir: Path):
    import mlflow

    page = _page_module()
    if page.browser() is None:
        pytest.skip("no Chromium on PATH (Debian: apt-get install chromium)")
    ws = Workspace(tmp_path / "ws").ensure()
    experiment = registry.connect(ws, "page")
    # as many figures as a full evaluation has; the safe values pass the default gate
    evaluation = {f"extra_metric_{i:02d}": i / 100 for i in range(16)}
    evaluation |= {"reward_accuracy": 0.71, "reward_margin_mean": 0.2, "kl_from_reference": 0.4}
    evaluation |= {"harmful_compliance_rate": 0.05, "refusal_rate": 0.1, "alignment_tax": 0.01}
    evaluation |= {"unique_response_rate": 1.0, "distinct_2": 0.6, "response_words_mean": 12.0}
    evaluation |= {"sycophancy_shift": 0.0}
    lineage = {"data_version": "0123456789abcdef", "dataset": "prefs", "methods": "sft,dpo"}
    lineage |= {"method": "dpo", "base_model": "tiny", "judge": "none; refusals by markers"}
    with mlflow.start_run(experiment_id=experiment):
        mlflow.log_metrics({f"eval/{k}": v for k, v in evaluation.items()})
        version = registry.register_policy(
            tiny_model_dir, "page-policy", {**lineage, **registry.headline_tags(evaluation)}
        ).version
    decision = promotion.promote(
        ws, "page-policy", version, promotion.load_policy()[0], actor="pipeline"
    )
    assert decision.promoted

    shots = page.capture(ws.tracking_uri, "page-policy", version, tmp_path / "shots")
    for png in shots.values():
        assert png.stat().st_size > 20_000, png  # a rendered page, not a blank one
    versions_table = _text(shots["model"].with_suffix(".html").read_text())
    assert "page-policy" in versions_table and "champion" in versions_table
    shown = set(re.findall(r"eval\.([a-z_0-9]+)", versions_table))
    assert shown == {
        "reward_accuracy",
        "harmful_compliance_rate",
        "refusal_rate",
        "kl_from_reference",
        "alignment_tax",
    }
    assert "gate.decision" in versions_table and "extra_metric" not in versions_table

    version_page = _text(shots["version"].with_suffix(".html").read_text())
    for needle in (
        "Gate: passed",
        "policy default",
        "Data: prefs version 0123456789abcdef",
        "sft → dpo",
        "Judge: none; refusals by markers",
        "Gate report:",
    ):
        assert needle in version_page, (needle, version_page[:3000])
