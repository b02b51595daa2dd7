"""Held-out evaluation of a DPO policy against its reference: implicit-reward accuracy and margin."""

from __future__ import annotations

from pathlib import Path

from alignment.config import EvaluationConfig
from alignment.evaluation.metrics import implicit_rewards, preference_metrics


def evaluate_dpo_policy(
    policy_path: Path,
    reference_path: Path,
    eval_path: Path,
    cfg: EvaluationConfig,
    beta: float,
) -> dict[str, float]:
    """Score every held-out pair with the policy and the reference; return the metrics."""
    import pandas as pd
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from alignment.methods.logprobs import score_pairs

    records = pd.read_parquet(eval_path).to_dict("records")
    torch.manual_seed(0)
    results = {}
    for role, path in (("policy", policy_path), ("reference", reference_path)):
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModelForCausalLM.from_pretrained(path, use_safetensors=True)
        model.eval()
        with torch.no_grad():
            results[role] = score_pairs(model, tokenizer, records, cfg.max_length, cfg.batch_size)
        del model
    policy_chosen, policy_rejected = (t.float().numpy() for t in results["policy"])
    ref_chosen, ref_rejected = (t.float().numpy() for t in results["reference"])
    chosen = implicit_rewards(policy_chosen, ref_chosen, beta)
    rejected = implicit_rewards(policy_rejected, ref_rejected, beta)
    metrics = preference_metrics(chosen, rejected)
    # the policy's own preference, without the reference: does it put more mass on chosen?
    metrics["policy_logp_accuracy"] = float((policy_chosen > policy_rejected).mean())
    metrics["reference_logp_accuracy"] = float((ref_chosen > ref_rejected).mean())
    return metrics
