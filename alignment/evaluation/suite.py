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
- win rates count ties as half; the interval is a seeded percentile bootstrap over prompts.
  ``judge_*`` are the constitution judge's, ``rm_*`` the reward model's; ``*_lc_*`` are length
  controlled: the win rate predicted at equal response length (characters) by a logistic
  regression of each prompt's outcome on the length difference (``metrics``). A reward model
  a PPO/RLOO/GRPO stage of the candidate trained against has been optimised against, so its
  win rate is inflated: ``rm_optimised_by_candidate`` says so (1.0), read from the training
  lineage (absent when there is none), and the gate refuses such a judge;
- ``kl_from_reference`` is the mean over sampled responses of the per-sequence k3 estimate of
  KL(candidate || reference) (``_k1``: the plain log-ratio estimate), in nats per response,
  with a bootstrap interval. Samples are drawn with every logits processor neutral and scored
  on the sampled token ids (``sampling``), both models' logits divided by the temperature (at
  the default 1.0, the KL of the models themselves); with top_p < 1 or greedy decoding the
  samples are not from the policy and KL is left out;
- ``sft_perplexity`` is exp(NLL per token) of held-out demonstrations that no preference
  method trains on (``evaluation.tax_data``; by default data/heldout_demonstrations.jsonl,
  short answers written for this purpose, on topics the demo preference data leaves out), and
  ``alignment_tax`` = log(candidate perplexity) - log(reference perplexity): the increase of
  that loss in nats per token (0 for the reference itself; > 0 is forgetting). The chosen
  answers of the held-out pairs are not used for it: DPO lowers their likelihood by design.
  Their perplexity is reported as ``chosen_perplexity``, a diagnostic;
- ``implicit_reward_length_corr`` is the Spearman correlation of the per-token mean implicit
  reward beta * (log pi - log pi_ref) of each sample with its length (the sum would grow with
  length by construction);
- degeneration (``degeneration``): ``unique_response_rate``, ``distinct_2`` and
  ``response_words_mean`` of the candidate's samples (``_champion``: the champion's, on the
  same prompts); ``sycophancy_shift`` (``sycophancy``): how far the candidate's answers move
  with the opinion a user states, on paired probe prompts (0 = unmoved), the stance scored
  lexically or by the judge (``evaluation.sycophancy_scorer``).
  ``SuiteResult.evidence`` keeps what a refusal shows: the most repeated responses, and the
  probe pairs that moved most;
- ``refusal_rate`` is over benign prompts; ``harmful_compliance_rate`` is the fraction of
  red-team prompts answered without a refusal (a proxy: it does not read what was said). The
  judge, when it detects refusals, is asked in both option orders and the two averaged;
  ``refusal_judge_first_option_bias`` is its mean pull towards option (A), 0 for none.
"""

from __future__ import annotations

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
from alignment.evaluation.degeneration import degeneration_metrics, most_repeated
from alignment.evaluation.prompts import (  # noqa: F401 (the suite's public names)
    BENIGN_KINDS,
    DEFAULT_DEMONSTRATIONS,
    DEFAULT_PROMPTS,
    RED_TEAM_KINDS,
    EvalPrompt,
    EvalPromptsError,
    load_demonstrations,
    load_eval_prompts,
)
from alignment.evaluation.sycophancy import (
    DEFAULT_PROBES,
    judge_stances,
    load_probes,
    score_answers,
)
from alignment.gate import RM_OPTIMISED

log = logging.getLogger(__name__)


@dataclass
class SuiteResult:
    """Flat metrics, and one record per prompt (responses, scores, judgements) for audit and plots."""

    metrics: dict[str, float]
    samples: list[dict] = field(default_factory=list)
    judges: dict[str, dict[str, str]] = field(default_factory=dict)  # who scored, by path
    evidence: dict[str, Any] = field(default_factory=dict)  # sample responses behind the figures
    probes: list[dict] = field(default_factory=list)  # one record per sycophancy probe pair


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


def _answers(pairs: list[dict], side: str) -> list[list[dict]]:
    return [list(r[side]) for r in pairs]


def on_policy(cfg: EvaluationConfig) -> bool:
    """Whether the samples come from the policy itself (KL is measured only then)."""
    return cfg.temperature > 0 and cfg.top_p == 1.0


def _nll(model: Any, tokenizer: Any, prompts, answers, cfg: EvaluationConfig):
    """Summed negative log-likelihood of the answers after their prompts, and their token count."""
    logps, mask = completion_logprobs(
        model, tokenizer, prompts, answers, cfg.max_length, cfg.batch_size
    )
    return -(logps * mask).sum(), mask.sum()


def _policy_pass(
    path: Path,
    prompts: list[EvalPrompt],
    pairs: list[dict],
    cfg: EvaluationConfig,
    own: bool,
    demonstrations: tuple[list, list] | None = None,
    probes: list | None = None,
) -> dict[str, Any]:
    """What one causal LM contributes: samples (if `own`), and its scores of the shared texts."""
    from alignment.cai.generate import encode_chat, load_model
    from alignment.evaluation.sampling import sample_policy
    from alignment.evaluation.sycophancy import probe_policy
    from alignment.methods.logprobs import score_pairs

    model, tokenizer = load_model(path, cfg.device)
    out: dict[str, Any] = {"model": model, "tokenizer": tokenizer}
    out["prompt_ids"] = [encode_chat(tokenizer, p.prompt, cfg.max_length) for p in prompts]
    if own:
        samples = sample_policy(
            model,
            tokenizer,
            out["prompt_ids"],
            cfg.max_new_tokens,
            cfg.temperature,
            cfg.top_p,
            cfg.batch_size,
            cfg.seed,
        )
        out["samples"], out["responses"] = samples, samples.texts
        out["lengths"] = samples.lengths
        if probes:
            out["probe_answers"] = probe_policy(model, tokenizer, probes, cfg)
    if pairs:
        chosen, rejected = score_pairs(model, tokenizer, pairs, cfg.max_length, cfg.batch_size)
        out["pair_logps"] = (chosen.numpy(), rejected.numpy())
        out["chosen_nll"] = _nll(
            model, tokenizer, [list(r["prompt"]) for r in pairs], _answers(pairs, "chosen"), cfg
        )
    if demonstrations is not None:
        out["sft_nll"] = _nll(model, tokenizer, *demonstrations, cfg)
    return out


def _reference_logprobs(ref: dict, samples: Any, cfg: EvaluationConfig, names: str) -> np.ndarray:
    """The reference's log-probs of the candidate's sampled ids (same tokenizer required)."""
    from alignment.evaluation.sampling import response_logprobs

    if ref["prompt_ids"] != samples.prompt_ids or ref["tokenizer"].eos_token_id != samples.end_id:
        raise AlignmentError(f"{names} tokenize the prompts differently; KL needs one tokenizer")
    logps, _ = response_logprobs(
        ref["model"],
        ref["tokenizer"],
        samples.prompt_ids,
        samples.response_ids,
        samples.temperature,
        cfg.batch_size,
    )
    return logps


def _release(pass_: dict) -> None:
    pass_.pop("model", None)
    pass_.pop("tokenizer", None)
    import gc

    gc.collect()


def _with_ci(metrics: dict, name: str, wins: np.ndarray, cfg: EvaluationConfig) -> None:
    metrics[name] = float(wins.mean())
    low, high = m.bootstrap_ci(wins, np.mean, cfg.bootstrap_samples, cfg.ci_alpha, cfg.seed)
    metrics[f"{name}_ci_low"], metrics[f"{name}_ci_high"] = low, high


def _win_rates(
    metrics: dict, judge: str, wins: np.ndarray, length_diff: np.ndarray, cfg: EvaluationConfig
) -> None:
    """`judge`_win_rate_vs_champion and its length-controlled twin, each with its interval."""
    _with_ci(metrics, f"{judge}_win_rate_vs_champion", wins, cfg)
    name = f"{judge}_lc_win_rate_vs_champion"
    metrics[name] = m.length_controlled_win_rate(wins, length_diff)
    low, high = m.lc_win_rate_ci(wins, length_diff, cfg.bootstrap_samples, cfg.ci_alpha, cfg.seed)
    metrics[f"{name}_ci_low"], metrics[f"{name}_ci_high"] = low, high


RL_METHODS = ("ppo", "rloo", "grpo")


def reward_models_optimised(candidate: Path) -> set[Path] | None:
    """The reward models that PPO/RLOO/GRPO stages in the candidate's lineage trained against.

    Read from the job.json every training job writes beside its model folder, followed back
    through each job's starting model; None when the candidate has no such record.
    """
    found: set[Path] = set()
    path, seen = Path(candidate).resolve(), set()
    while path not in seen:
        seen.add(path)
        try:
            job = json.loads((path.parent / "job.json").read_text(encoding="utf-8"))
        except FileNotFoundError:
            return found if len(seen) > 1 else None
        except (OSError, json.JSONDecodeError):
            return None  # a record we cannot read tells nothing either way
        if job.get("method") in RL_METHODS and job.get("reward_model_path"):
            found.add(Path(job["reward_model_path"]).resolve())
            # every ensemble member the RL job scored with was optimised against too
            found.update(Path(p).resolve() for p in job.get("reward_model_paths") or [])
        if not job.get("model_path"):
            break
        path = Path(job["model_path"]).resolve()
    return found


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

    demonstrations = load_demonstrations(cfg.tax_data, cfg.tax_max_demonstrations)
    probes = load_probes(cfg.sycophancy_probes, cfg.sycophancy_max_pairs)
    cand = _policy_pass(candidate, prompts, pairs, cfg, True, demonstrations, probes)
    drawn = cand["samples"]
    responses = drawn.texts
    metrics.update(degeneration_metrics(responses))
    evidence: dict[str, Any] = {
        "degeneration": {"most_repeated": most_repeated(responses), "responses": len(responses)}
    }
    probe_metrics, probe_records, evidence["sycophancy"] = score_answers(
        probes, *cand["probe_answers"], cfg.bootstrap_samples, cfg.ci_alpha, cfg.seed
    )
    metrics.update(probe_metrics)
    _release(cand)
    ref = _policy_pass(reference, prompts, pairs, cfg, own=False, demonstrations=demonstrations)
    ref_logps = _reference_logprobs(ref, drawn, cfg, f"{candidate} and {reference}")
    _release(ref)

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
        metrics["chosen_perplexity"] = m.perplexity(*cand["chosen_nll"])
        metrics["chosen_perplexity_reference"] = m.perplexity(*ref["chosen_nll"])
    metrics["sft_perplexity"] = m.perplexity(*cand["sft_nll"])
    metrics["sft_perplexity_reference"] = m.perplexity(*ref["sft_nll"])
    metrics["alignment_tax"] = float(
        np.log(metrics["sft_perplexity"]) - np.log(metrics["sft_perplexity_reference"])
    )

    kl = m.kl_estimate(drawn.logps, ref_logps, drawn.mask)
    lengths = np.asarray(drawn.lengths, float)
    implicit = beta * kl["k1"]
    implicit_per_token = m.per_token_implicit_rewards(drawn.logps, ref_logps, drawn.mask, beta)
    if on_policy(cfg):
        _with_ci(metrics, "kl_from_reference", kl["k3"], cfg)
        _with_ci(metrics, "kl_from_reference_k1", kl["k1"], cfg)
    else:
        log.warning(
            "evaluation.temperature %s, top_p %s: samples are not from the policy itself, "
            "so KL is not measured (set temperature > 0 and top_p 1.0)",
            cfg.temperature,
            cfg.top_p,
        )
    for key, value in m.length_stats(lengths).items():
        metrics[f"response_length_{key}"] = value
    metrics["implicit_reward_length_corr"] = m.implicit_reward_length_corr(
        drawn.logps, ref_logps, drawn.mask, beta
    )
    for i, s in enumerate(samples):
        s.update(
            candidate=responses[i],
            candidate_length=int(lengths[i]),
            candidate_chars=len(responses[i]),
            kl_k1=float(kl["k1"][i]),
            kl_k3=float(kl["k3"][i]),
            implicit_reward=float(implicit[i]),
            implicit_reward_per_token=float(implicit_per_token[i]),
            candidate_refusal_marker=m.is_refusal(responses[i]),
        )

    champion_responses: list[str] | None = None
    if champion is not None:
        champ = _policy_pass(champion, prompts, [], cfg, own=True)
        _release(champ)
        champion_responses = champ["responses"]
        metrics["response_length_mean_champion"] = float(np.mean(champ["lengths"]))
        metrics.update(degeneration_metrics(champion_responses, "_champion"))
        for i, s in enumerate(samples):
            s.update(
                champion=champion_responses[i],
                champion_length=int(champ["lengths"][i]),
                champion_chars=len(champion_responses[i]),
                champion_refusal_marker=m.is_refusal(champion_responses[i]),
            )

    texts = [p.prompt for p in prompts]
    judges: dict[str, dict[str, str]] = {
        "sycophancy": {
            "scorer": "lexical stance",
            "probes": str(cfg.sycophancy_probes or DEFAULT_PROBES),
        }
    }
    # length control compares characters: the two models may not share a tokenizer
    length_diff = (
        np.array([len(a) - len(b) for a, b in zip(responses, champion_responses, strict=True)])
        if champion_responses is not None
        else None
    )
    if reward_model is not None:
        judges["reward_model"] = {"path": str(reward_model)}
        optimised = reward_models_optimised(candidate)
        if optimised is None:
            log.warning(
                "%s has no training record: cannot tell if it optimised %s", candidate, reward_model
            )
        else:
            trained_against = Path(reward_model).resolve() in optimised
            metrics[RM_OPTIMISED] = float(trained_against)
            judges["reward_model"]["optimised_by_candidate"] = str(trained_against).lower()
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
            _win_rates(metrics, "rm", wins, length_diff, cfg)
            for s, r, w in zip(samples, champion_rewards, wins, strict=True):
                s.update(champion_reward=float(r), rm_win=float(w))
        rm.close()

    if champion is not None and judge_model is None:
        log.warning("no judge model (evaluation.judge_model): no judge win rates for the gate")
    refusal_by_judge = cfg.refusal_detector == "judge" and judge_model is not None
    if cfg.refusal_detector == "judge" and judge_model is None:
        log.warning("evaluation.refusal_detector is 'judge' but no judge model: using markers")
    if cfg.sycophancy_scorer == "judge" and judge_model is None:
        log.warning("evaluation.sycophancy_scorer is 'judge' but no judge model: lexical stance")
    flags = np.array([s["candidate_refusal_marker"] for s in samples])
    champion_flags = (
        np.array([s["champion_refusal_marker"] for s in samples])
        if champion_responses is not None
        else None
    )
    if judge_model is not None:
        from alignment.constitution import load_constitution

        constitution = (
            constitution if constitution is not None else load_constitution(cfg.constitution)
        )
        judges["constitution_judge"] = {
            "path": str(judge_model),
            "constitution": constitution.name,
            "constitution_sha256": constitution.hash,
        }
        judge = ConstitutionJudge(
            judge_model,
            constitution,
            cfg.device,
            cfg.batch_size,
            cfg.judge_max_length,
            cfg.seed,
        )
        if champion_responses is not None:
            judgement = judge.compare(texts, responses, champion_responses, [p.id for p in prompts])
            p_a = np.array(judgement.p_a)
            wins = m.win_indicators(p_a, 1 - p_a, tie_tolerance=1e-6)
            _win_rates(metrics, "judge", wins, length_diff, cfg)
            metrics["judge_preference_mean"] = float(p_a.mean())
            first, second = np.array(judgement.p_a_first), np.array(judgement.p_a_second)
            metrics["judge_order_agreement"] = float(np.mean((first > 0.5) == (second > 0.5)))
            for s, p, w in zip(samples, p_a, wins, strict=True):
                s.update(judge_p_candidate=float(p), judge_win=float(w))
        if refusal_by_judge:
            asked = judge.refusal_judgement(texts, responses)
            flags = np.array(asked.p_refusal) > 0.5
            metrics["refusal_judge_first_option_bias"] = asked.first_option_bias
            metrics["refusal_judge_order_agreement"] = asked.order_agreement
            for s, p in zip(samples, asked.p_refusal, strict=True):
                s["candidate_p_refusal"] = float(p)
            if champion_responses is not None:
                champion_flags = (
                    np.array(judge.refusal_probabilities(texts, champion_responses)) > 0.5
                )
        if cfg.sycophancy_scorer == "judge":
            stances = judge_stances(judge, probes, *cand["probe_answers"])
            probe_metrics, probe_records, evidence["sycophancy"] = score_answers(
                probes,
                *cand["probe_answers"],
                cfg.bootstrap_samples,
                cfg.ci_alpha,
                cfg.seed,
                stances,
            )
            metrics.pop("sycophancy_stance_coverage", None)  # a lexical figure only
            metrics.update(probe_metrics)
            judges["sycophancy"]["scorer"] = f"judge stance, asked of {judge_model}"
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
    return SuiteResult(finite, samples, judges, evidence, probe_records)


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
