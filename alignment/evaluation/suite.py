"""The evaluation suite: a candidate policy against the champion and its reference, on held-out data.

One model is in memory at a time, loaded once each:

1. candidate: samples a response to every held-out prompt (seeded, batched), scores its own
   samples token by token (for KL), the held-out pairs (DPO implicit reward) and the SFT
   held-out answers (perplexity);
2. reference: the same scoring of the candidate's samples, the pairs and the SFT answers;
3. champion (if any): samples its responses to the same prompts;
4. reward model (if any): scores both sets of responses and the held-out pairs;
5. constitution judge (if any): compares candidate and champion in both orders, and (option)
   classifies refusals.

Metrics come back flat, under the names the gate policy uses (configs/gates/default.yaml);
metrics that need a missing model (champion, reward model, judge) are absent, not zero, and
undefined values (a correlation of constant lengths) are left out.

Definitions:
- win rates count ties as half; the interval is a seeded percentile bootstrap over prompts;
- ``kl_from_reference`` is the mean over sampled responses of the per-sequence k3 estimate of
  KL(candidate || reference) (``_k1``: the plain log-ratio estimate), in nats per response;
- ``sft_perplexity`` is exp(NLL per token) of the chosen answers of the held-out pairs, and
  ``alignment_tax`` = log(candidate perplexity) - log(reference perplexity): the increase of the
  held-out SFT loss in nats per token (0 for the reference itself; > 0 is forgetting);
- ``refusal_rate`` is over benign prompts; ``harmful_compliance_rate`` is the fraction of
  red-team prompts answered without a refusal (a proxy: it does not read what was said).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from alignment.config import EvaluationConfig
from alignment.errors import AlignmentError
from alignment.evaluation import metrics as m

log = logging.getLogger(__name__)

DEFAULT_PROMPTS = Path(__file__).resolve().parents[2] / "data" / "eval_prompts.jsonl"
BENIGN_KINDS = ("benign", "helpful")
RED_TEAM_KINDS = ("red_team",)


class EvalPromptsError(AlignmentError):
    """The held-out prompt file is unreadable or has a bad line; the message names file and line."""


@dataclass
class EvalPrompt:
    id: str
    prompt: list[dict]
    category: str
    kind: str


@dataclass
class SuiteResult:
    """Flat metrics, and one record per prompt (responses, scores, judgements) for audit and plots."""

    metrics: dict[str, float]
    samples: list[dict] = field(default_factory=list)


def load_eval_prompts(path: Path | str | None = None, limit: int | None = None) -> list[EvalPrompt]:
    """Held-out prompts (JSONL: ``prompt`` text or messages, ``category``, ``kind``, optional ``id``)."""
    path = Path(path) if path is not None else DEFAULT_PROMPTS
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise EvalPromptsError(f"{path}: cannot read prompts ({exc.strerror or exc})") from exc
    out: list[EvalPrompt] = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise EvalPromptsError(f"{path}:{number}: not JSON ({exc.msg})") from exc
        prompt = row.get("prompt") if isinstance(row, dict) else None
        if isinstance(prompt, str) and prompt.strip():
            messages = [{"role": "user", "content": prompt}]
        elif isinstance(prompt, list) and prompt and all(isinstance(t, dict) for t in prompt):
            messages = prompt
        else:
            raise EvalPromptsError(
                f"{path}:{number}: 'prompt' must be non-empty text or a list of messages"
            )
        kind = str(row.get("kind", "benign"))
        if kind not in BENIGN_KINDS + RED_TEAM_KINDS:
            raise EvalPromptsError(
                f"{path}:{number}: kind {kind!r} is not one of {BENIGN_KINDS + RED_TEAM_KINDS}"
            )
        blob = json.dumps(messages, sort_keys=True, ensure_ascii=False).encode()
        out.append(
            EvalPrompt(
                id=str(row.get("id") or hashlib.sha256(blob).hexdigest()[:12]),
                prompt=messages,
                category=str(row.get("category") or kind),
                kind=kind,
            )
        )
    if not out:
        raise EvalPromptsError(f"{path}: no prompts")
    return _take_by_side(out, limit) if limit else out


def _take_by_side(prompts: list[EvalPrompt], limit: int) -> list[EvalPrompt]:
    """The first ``limit`` prompts taken in turn from the benign and the red-team side.

    A plain head of the file would be benign prompts only, and a short evaluation would measure
    no harmful compliance at all (the gate caps it).
    """
    sides = [
        [p for p in prompts if p.kind in BENIGN_KINDS],
        [p for p in prompts if p.kind in RED_TEAM_KINDS],
    ]
    taken: list[EvalPrompt] = []
    for turn in range(len(prompts)):
        for side in sides:
            if turn < len(side) and len(taken) < limit:
                taken.append(side[turn])
    return taken


def completion_logprobs(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[list[dict]],
    completions: Sequence[list[dict]],
    max_length: int,
    batch_size: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Per-token log-probs of each completion after its prompt: ([n, tokens], mask [n, tokens])."""
    import torch

    from alignment.cai.generate import pad_id
    from alignment.methods.logprobs import encode_completion

    encoded = [
        encode_completion(tokenizer, list(p), list(c), max_length)
        for p, c in zip(prompts, completions, strict=True)
    ]
    counts = [len(ids) - start for ids, start in encoded]
    logps = np.zeros((len(encoded), max([1, *counts])))
    mask = np.zeros_like(logps)
    device = next(model.parameters()).device
    with torch.no_grad():
        for first in range(0, len(encoded), batch_size):
            batch = encoded[first : first + batch_size]
            width = max(len(ids) for ids, _ in batch)
            input_ids = torch.full((len(batch), width), pad_id(tokenizer), dtype=torch.long)
            attention = torch.zeros((len(batch), width), dtype=torch.long)
            for row, (ids, _) in enumerate(batch):
                input_ids[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
                attention[row, : len(ids)] = 1
            logits = (
                model(input_ids=input_ids.to(device), attention_mask=attention.to(device))
                .logits[:, :-1]
                .float()
            )
            token_logps = (
                torch.log_softmax(logits, dim=-1)
                .gather(-1, input_ids[:, 1:].to(device).unsqueeze(-1))
                .squeeze(-1)
                .cpu()
                .numpy()
            )
            for row, (ids, start) in enumerate(batch):
                i, n = first + row, len(ids) - start
                # logits at position t predict token t + 1: the completion's are start-1 .. end-2
                logps[i, :n] = token_logps[row, start - 1 : len(ids) - 1]
                mask[i, :n] = 1
    return logps, mask


def is_reward_model(path: Path | str) -> bool:
    """Whether a checkpoint folder holds a sequence-classification (reward) model."""
    try:
        config = json.loads((Path(path) / "config.json").read_text())
    except (OSError, json.JSONDecodeError):
        return False
    return any(a.endswith("ForSequenceClassification") for a in config.get("architectures") or [])


def _settings(cfg: EvaluationConfig):
    from alignment.cai.generate import GenerationSettings

    return GenerationSettings(
        max_new_tokens=cfg.max_new_tokens,
        temperature=cfg.temperature,
        top_p=cfg.top_p,
        batch_size=cfg.batch_size,
        max_length=cfg.max_length,
        seed=cfg.seed,
    )


def _answers(pairs: list[dict], side: str) -> list[list[dict]]:
    return [list(r[side]) for r in pairs]


def _policy_pass(
    path: Path, prompts: list[EvalPrompt], pairs: list[dict], cfg: EvaluationConfig, own: bool
) -> dict[str, Any]:
    """What one causal LM contributes: samples (if `own`), and its scores of the shared texts."""
    from alignment.cai.generate import LocalGenerator, load_model
    from alignment.methods.logprobs import score_pairs

    model, tokenizer = load_model(path, cfg.device)
    out: dict[str, Any] = {"model": model, "tokenizer": tokenizer}
    if own:
        conversations = [p.prompt for p in prompts]
        out["responses"] = LocalGenerator(model, tokenizer).generate(conversations, _settings(cfg))
        out["lengths"] = [
            len(tokenizer(r, add_special_tokens=False)["input_ids"]) for r in out["responses"]
        ]
    if pairs:
        chosen, rejected = score_pairs(model, tokenizer, pairs, cfg.max_length, cfg.batch_size)
        out["pair_logps"] = (chosen.numpy(), rejected.numpy())
        logps, mask = completion_logprobs(
            model,
            tokenizer,
            [list(r["prompt"]) for r in pairs],
            _answers(pairs, "chosen"),
            cfg.max_length,
            cfg.batch_size,
        )
        out["sft_nll"], out["sft_tokens"] = -(logps * mask).sum(), mask.sum()
    return out


def _sample_logprobs(pass_: dict, prompts: list[EvalPrompt], responses: list[str], cfg):
    return completion_logprobs(
        pass_["model"],
        pass_["tokenizer"],
        [p.prompt for p in prompts],
        [[{"role": "assistant", "content": r}] for r in responses],
        cfg.max_length,
        cfg.batch_size,
    )


def _release(pass_: dict) -> None:
    pass_.pop("model", None)
    pass_.pop("tokenizer", None)
    import gc

    gc.collect()


def _with_ci(metrics: dict, name: str, wins: np.ndarray, cfg: EvaluationConfig) -> None:
    metrics[name] = float(wins.mean())
    low, high = m.bootstrap_ci(wins, np.mean, cfg.bootstrap_samples, cfg.ci_alpha, cfg.seed)
    metrics[f"{name}_ci_low"], metrics[f"{name}_ci_high"] = low, high


def _refusal_metrics(flags: np.ndarray, prompts: list[EvalPrompt], suffix: str = "") -> dict:
    benign = np.array([p.kind in BENIGN_KINDS for p in prompts])
    out = {}
    if benign.any():
        out[f"refusal_rate{suffix}"] = m.rate(flags[benign])
    if (~benign).any():
        out[f"harmful_compliance_rate{suffix}"] = m.rate(~flags[~benign])
    return out


def _reward_model_accuracy(rm: Any, pairs: list[dict]) -> dict[str, float]:
    """Held-out pair metrics of a reward model: does it score chosen above rejected?"""
    chosen, rejected = (
        rm.score([r["prompt"] for r in pairs], [r[side][-1]["content"] for r in pairs])
        for side in ("chosen", "rejected")
    )
    return m.preference_metrics(np.array(chosen), np.array(rejected))


def run_suite(
    candidate: Path,
    champion: Path | None,
    reference: Path,
    eval_pairs_path: Path | None,
    prompts_path: Path | None,
    cfg: EvaluationConfig,
    reward_model: Path | None = None,
    judge_model: Path | None = None,
    beta: float = 0.1,
    constitution: Any = None,
) -> SuiteResult:
    """Evaluate `candidate` (see the module docstring); return metrics and per-prompt records."""
    import pandas as pd

    from alignment.evaluation.judges import ConstitutionJudge, RewardModelJudge

    pairs = pd.read_parquet(eval_pairs_path).to_dict("records") if eval_pairs_path else []
    metrics: dict[str, float] = {}
    if is_reward_model(candidate):
        # a reward model is judged by its held-out accuracy alone
        if not pairs:
            raise AlignmentError(f"{candidate} is a reward model: give held-out pairs to score")
        rm = RewardModelJudge(candidate, cfg.device, cfg.batch_size, cfg.max_length)
        scored = _reward_model_accuracy(rm, pairs)
        rm.close()
        return SuiteResult(
            {
                "rm_accuracy": scored["reward_accuracy"],
                "rm_margin_mean": scored["reward_margin_mean"],
                "pairs": scored["pairs"],
            }
        )

    prompts = load_eval_prompts(prompts_path or cfg.prompts, cfg.max_prompts)
    samples = [
        {"id": p.id, "category": p.category, "kind": p.kind, "prompt": p.prompt} for p in prompts
    ]

    cand = _policy_pass(candidate, prompts, pairs, cfg, own=True)
    responses = cand["responses"]
    cand_logps, mask = _sample_logprobs(cand, prompts, responses, cfg)
    _release(cand)
    ref = _policy_pass(reference, prompts, pairs, cfg, own=False)
    ref_logps, ref_mask = _sample_logprobs(ref, prompts, responses, cfg)
    _release(ref)
    if ref_mask.shape != mask.shape or not np.array_equal(ref_mask, mask):
        raise AlignmentError(
            f"{candidate} and {reference} tokenize the samples differently; KL needs one tokenizer"
        )

    if pairs:
        policy_chosen, policy_rejected = cand["pair_logps"]
        ref_chosen, ref_rejected = ref["pair_logps"]
        metrics.update(
            m.preference_metrics(
                m.implicit_rewards(policy_chosen, ref_chosen, beta),
                m.implicit_rewards(policy_rejected, ref_rejected, beta),
            )
        )
        metrics["policy_logp_accuracy"] = float((policy_chosen > policy_rejected).mean())
        metrics["reference_logp_accuracy"] = float((ref_chosen > ref_rejected).mean())
        metrics["sft_perplexity"] = m.perplexity(cand["sft_nll"], cand["sft_tokens"])
        metrics["sft_perplexity_reference"] = m.perplexity(ref["sft_nll"], ref["sft_tokens"])
        metrics["alignment_tax"] = float(
            np.log(metrics["sft_perplexity"]) - np.log(metrics["sft_perplexity_reference"])
        )

    kl = m.kl_estimate(cand_logps, ref_logps, mask)
    lengths = np.array(cand["lengths"], float)
    implicit = beta * kl["k1"]
    metrics["kl_from_reference"] = float(kl["k3"].mean())
    metrics["kl_from_reference_k1"] = float(kl["k1"].mean())
    for key, value in m.length_stats(lengths).items():
        metrics[f"response_length_{key}"] = value
    metrics["implicit_reward_length_corr"] = m.spearman(implicit, lengths)
    for i, s in enumerate(samples):
        s.update(
            candidate=responses[i],
            candidate_length=int(lengths[i]),
            kl_k1=float(kl["k1"][i]),
            kl_k3=float(kl["k3"][i]),
            implicit_reward=float(implicit[i]),
            candidate_refusal_marker=m.is_refusal(responses[i]),
        )

    champion_responses: list[str] | None = None
    if champion is not None:
        champ = _policy_pass(champion, prompts, [], cfg, own=True)
        _release(champ)
        champion_responses = champ["responses"]
        metrics["response_length_mean_champion"] = float(np.mean(champ["lengths"]))
        for i, s in enumerate(samples):
            s.update(
                champion=champion_responses[i],
                champion_length=int(champ["lengths"][i]),
                champion_refusal_marker=m.is_refusal(champion_responses[i]),
            )

    texts = [p.prompt for p in prompts]
    if reward_model is not None:
        rm = RewardModelJudge(reward_model, cfg.device, cfg.batch_size, cfg.max_length)
        rewards = np.array(rm.score(texts, responses))
        metrics["reward_mean"] = float(rewards.mean())
        metrics["reward_length_corr"] = m.spearman(rewards, lengths)
        metrics["reward_length_pearson"] = m.pearson(rewards, lengths)
        for s, r in zip(samples, rewards, strict=True):
            s["candidate_reward"] = float(r)
        if pairs:
            metrics["rm_accuracy"] = _reward_model_accuracy(rm, pairs)["reward_accuracy"]
        if champion_responses is not None:
            champion_rewards = np.array(rm.score(texts, champion_responses))
            metrics["reward_mean_champion"] = float(champion_rewards.mean())
            wins = m.win_indicators(rewards, champion_rewards)
            _with_ci(metrics, "win_rate_vs_champion", wins, cfg)
            for s, r, w in zip(samples, champion_rewards, wins, strict=True):
                s.update(champion_reward=float(r), rm_win=float(w))
        rm.close()

    refusal_by_judge = cfg.refusal_detector == "judge" and judge_model is not None
    if cfg.refusal_detector == "judge" and judge_model is None:
        log.warning("evaluation.refusal_detector is 'judge' but no judge model: using markers")
    flags = np.array([s["candidate_refusal_marker"] for s in samples])
    champion_flags = (
        np.array([s["champion_refusal_marker"] for s in samples])
        if champion_responses is not None
        else None
    )
    if judge_model is not None:
        from alignment.constitution import load_constitution

        judge = ConstitutionJudge(
            judge_model,
            constitution if constitution is not None else load_constitution(cfg.constitution),
            cfg.device,
            cfg.batch_size,
            cfg.judge_max_length,
            cfg.seed,
        )
        if champion_responses is not None:
            judgement = judge.compare(texts, responses, champion_responses, [p.id for p in prompts])
            p_a = np.array(judgement.p_a)
            wins = m.win_indicators(p_a, 1 - p_a, tie_tolerance=1e-6)
            _with_ci(metrics, "judge_win_rate_vs_champion", wins, cfg)
            metrics["judge_preference_mean"] = float(p_a.mean())
            first, second = np.array(judgement.p_a_first), np.array(judgement.p_a_second)
            metrics["judge_order_agreement"] = float(np.mean((first > 0.5) == (second > 0.5)))
            for s, p, w in zip(samples, p_a, wins, strict=True):
                s.update(judge_p_candidate=float(p), judge_win=float(w))
        if refusal_by_judge:
            flags = np.array(judge.refusal_probabilities(texts, responses)) > 0.5
            if champion_responses is not None:
                champion_flags = (
                    np.array(judge.refusal_probabilities(texts, champion_responses)) > 0.5
                )
        judge.close()

    for i, s in enumerate(samples):
        s["candidate_refusal"] = bool(flags[i])
        if champion_flags is not None:
            s["champion_refusal"] = bool(champion_flags[i])
    metrics.update(_refusal_metrics(flags, prompts))
    if champion_flags is not None:
        champion_rates = _refusal_metrics(champion_flags, prompts, "_champion")
        metrics.update(champion_rates)
        for name in ("refusal_rate", "harmful_compliance_rate"):
            if name in metrics:
                metrics[f"{name}_delta_vs_champion"] = (
                    metrics[name] - champion_rates[f"{name}_champion"]
                )
    metrics["prompts"] = float(len(prompts))
    finite = {k: float(v) for k, v in metrics.items() if np.isfinite(v)}
    return SuiteResult(finite, samples)


def evaluate_candidate(
    candidate: Path,
    champion: Path | None,
    reference: Path,
    eval_pairs_path: Path | None,
    prompts_path: Path | None,
    cfg: EvaluationConfig,
    reward_model: Path | None = None,
    judge_model: Path | None = None,
    *,
    beta: float = 0.1,
    constitution: Any = None,
    out_dir: Path | None = None,
) -> dict[str, float]:
    """Run the suite; with `out_dir`, also write samples.jsonl, table.txt, table.md and plots/."""
    result = run_suite(
        Path(candidate),
        Path(champion) if champion else None,
        Path(reference),
        Path(eval_pairs_path) if eval_pairs_path else None,
        Path(prompts_path) if prompts_path else None,
        cfg,
        Path(reward_model) if reward_model else None,
        Path(judge_model) if judge_model else None,
        beta=beta,
        constitution=constitution,
    )
    if out_dir is not None:
        from alignment.evaluation.report import write_report

        write_report(result, Path(out_dir))
    return result.metrics
