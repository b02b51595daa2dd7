"""Score a policy on the oracle task: mean oracle reward, win rate against the SFT policy, KL to
the SFT policy, and length/diversity statistics, all on responses sampled for held-out prompts.

KL(policy || SFT) is estimated on the policy's own samples (temperature 1, no top-k/top-p, so
the samples come from the policy itself) from the log-probs both models give the sampled tokens:
k1 = log pi(y) - log pi_sft(y) per response, averaged (unbiased), and k3 (never negative).

Several samples share each prompt, so they are not independent: every interval is a cluster
bootstrap that resamples prompts, each with all of its samples.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from alignment.evaluation.metrics import kl_estimate, win_indicators
from alignment.oracle.task import as_messages, prompt_oracle_reward, text_stats


@dataclass
class Samples:
    """Responses sampled from one policy, with per-token log-probs under it and the reference."""

    prompts: list[str]
    texts: list[str]
    token_counts: list[int]
    logp_policy: np.ndarray  # [n, tokens]
    logp_reference: np.ndarray | None = None  # [n, tokens]
    mask: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))

    @property
    def rewards(self) -> np.ndarray:
        return np.array(
            [prompt_oracle_reward(p, t) for p, t in zip(self.prompts, self.texts, strict=True)],
            float,
        )


def load_policy(path: Path | str, device: str = "cpu") -> tuple[Any, Any]:
    """A causal LM in eval mode (fp32, safetensors, no remote code) and its tokenizer."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(path), trust_remote_code=False)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(
        str(path), dtype=torch.float32, trust_remote_code=False, use_safetensors=True
    ).to(device)
    return model.eval(), tokenizer


def sample(
    policy: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    max_new_tokens: int,
    seed: int,
    reference: Any = None,
    batch_size: int = 64,
    temperature: float = 1.0,
) -> Samples:
    """One response per prompt (pure sampling), scored under the policy and the reference."""
    import torch

    from alignment.methods.ppo import cut_at_eos, left_pad, response_logprobs
    from alignment.methods.sampling import sample_from_policy

    device = next(policy.parameters()).device
    pad, eos = tokenizer.pad_token_id, tokenizer.eos_token_id
    texts, counts = [], []
    logps, ref_logps = [], []
    torch.manual_seed(seed)
    with torch.no_grad():
        for first in range(0, len(prompts), batch_size):
            batch = prompts[first : first + batch_size]
            ids = [
                list(
                    tokenizer.apply_chat_template(
                        as_messages(p), add_generation_prompt=True, return_dict=False
                    )
                )
                for p in batch
            ]
            query, query_mask = (t.to(device) for t in left_pad(ids, pad))
            context = query.shape[1]
            out = sample_from_policy(
                policy, query, query_mask, max_new_tokens=max_new_tokens,
                temperature=temperature, pad_id=pad, eos_id=eos,
            )  # fmt: skip
            responses, mask = cut_at_eos(out[:, context:], max_new_tokens, eos, pad)
            full = torch.cat([query, responses], dim=1)
            attention = torch.cat([query_mask, mask], dim=1)
            lp = response_logprobs(policy, full, attention, context, temperature) * mask
            logps.append(lp.cpu().numpy())
            if reference is not None:
                rlp = response_logprobs(reference, full, attention, context, temperature) * mask
                ref_logps.append(rlp.cpu().numpy())
            for row in range(len(batch)):
                kept = responses[row][mask[row].bool()]
                texts.append(tokenizer.decode(kept, skip_special_tokens=True).strip())
                counts.append(int(mask[row].sum()))
    mask_all = np.zeros((len(texts), max_new_tokens))
    for i, n in enumerate(counts):
        mask_all[i, :n] = 1
    return Samples(
        list(prompts),
        texts,
        counts,
        np.concatenate(logps) if logps else np.zeros((0, max_new_tokens)),
        np.concatenate(ref_logps) if ref_logps else None,
        mask_all,
    )


def repeat_prompts(prompts: Sequence[str], per_prompt: int) -> list[str]:
    """Each prompt `per_prompt` times, in a fixed order."""
    return [p for p in prompts for _ in range(per_prompt)]


def cluster_bootstrap_ci(
    values: Sequence[float] | np.ndarray,
    clusters: Sequence[Any],
    n: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap (1 - alpha) interval of the mean of `values`, resampling clusters.

    Each draw picks as many clusters as there are, with replacement, and takes the mean over all
    the values of the clusters picked (a cluster picked twice counts twice).
    """
    data = np.asarray(values, float)
    if data.size == 0:
        raise ValueError("no values to bootstrap")
    if len(clusters) != data.size:
        raise ValueError("values and clusters differ in length")
    _, index = np.unique(np.asarray(clusters, dtype=object).astype(str), return_inverse=True)
    sums = np.bincount(index, weights=data)
    counts = np.bincount(index).astype(float)
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, sums.size, size=(n, sums.size))
    means = sums[picks].sum(axis=1) / counts[picks].sum(axis=1)
    low, high = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return float(low), float(high)


def summarize(samples: Samples, baseline_rewards: np.ndarray, seed: int = 0) -> dict[str, Any]:
    """Oracle reward, win rate against the baseline's rewards (same prompts, ties count half),
    KL to the reference, and text statistics of one policy's samples; 95% intervals resample
    prompts (cluster bootstrap)."""
    rewards = samples.rewards
    wins = win_indicators(rewards, baseline_rewards)
    prompts = samples.prompts
    out: dict[str, Any] = {
        "oracle_reward": float(rewards.mean()),
        "oracle_reward_ci": list(cluster_bootstrap_ci(rewards, prompts, seed=seed)),
        "win_rate_vs_sft": float(wins.mean()),
        "win_rate_vs_sft_ci": list(cluster_bootstrap_ci(wins, prompts, seed=seed)),
        "prompts": len(set(prompts)),
        "positive_rate": float((rewards > 0).mean()),
        "tokens_mean": float(np.mean(samples.token_counts)),
        "samples": len(samples.texts),
        **text_stats(samples.texts),
    }
    if samples.logp_reference is not None:
        kl = kl_estimate(samples.logp_policy, samples.logp_reference, samples.mask)
        out["kl_to_sft"] = float(kl["k1"].mean())
        out["kl_to_sft_ci"] = list(cluster_bootstrap_ci(kl["k1"], prompts, seed=seed))
        out["kl_to_sft_k3"] = float(kl["k3"].mean())
    return out


def evaluate_policy(
    policy_path: Path | str,
    sft_path: Path | str,
    prompts: Sequence[str],
    baseline_rewards: np.ndarray,
    max_new_tokens: int,
    seed: int = 1,
    device: str = "cpu",
    examples: int = 5,
) -> dict[str, Any]:
    """Sample the policy on `prompts`, score everything against the SFT policy; a metrics dict
    with a few example responses."""
    policy, tokenizer = load_policy(policy_path, device)
    reference, _ = load_policy(sft_path, device)
    samples = sample(policy, tokenizer, prompts, max_new_tokens, seed, reference=reference)
    out = summarize(samples, baseline_rewards, seed)
    out["examples"] = [
        {"prompt": p, "response": t, "oracle_reward": prompt_oracle_reward(p, t)}
        for p, t in list(zip(samples.prompts, samples.texts, strict=True))[:examples]
    ]
    return out
