"""One PPO step as functions of models and tensors: rollout (sample responses to a batch of
prompts), score (reward model on the rendered turn, minus a per-token k1 KL penalty to the
reference), advantages (GAE, whitened), and update (several epochs of clipped policy and value
losses). The job that runs these steps, with DeepSpeed engines and checkpoints, is
``alignment.methods.ppo``; the losses are the pure functions of ``alignment.methods.losses``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from alignment.errors import ConfigError
from alignment.methods.losses import (
    clipped_policy_loss,
    clipped_value_loss,
    forward_kl_loss,
    gae_advantages,
    kl_penalty,
    masked_mean,
    whiten,
)

if TYPE_CHECKING:
    import torch

    from alignment.config import PPOConfig

# (query_responses [B, P + R], attention_mask [B, P + R], response_mask [B, R]) -> scores [B]
ScoreFn = Callable[["torch.Tensor", "torch.Tensor", "torch.Tensor"], "torch.Tensor"]


# --- model pieces -------------------------------------------------------------------------


def position_ids(attention_mask: torch.Tensor) -> torch.Tensor:
    """Positions that skip left padding, as `generate` uses them."""
    return (attention_mask.cumsum(-1) - 1).clamp(min=0)


def cut_at_eos(responses, width: int, eos_id: int, pad_id: int):
    """Sampled responses padded to ``width`` and cut after their first end-of-sequence token.

    Returns (responses with pad after the end, mask [B, width]: 1 up to and including it, or
    on every sampled token of a response that has none, never on the padding added here).
    """
    import torch

    sampled = responses.shape[1]
    responses = torch.nn.functional.pad(responses, (0, width - sampled), value=pad_id)
    positions = torch.arange(responses.shape[1], device=responses.device)
    # pad may be the end token itself (tokenizers without a pad): only sampled ones count
    is_eos = (responses == eos_id) & (positions < sampled).unsqueeze(0)
    first_eos = torch.where(is_eos.any(1), is_eos.float().argmax(1), sampled - 1)
    mask = (positions.unsqueeze(0) <= first_eos.unsqueeze(1)).long()
    return torch.where(mask.bool(), responses, pad_id), mask


def response_logprobs(
    model: Any,
    query_responses: torch.Tensor,
    attention_mask: torch.Tensor,
    context_length: int,
    temperature: float,
) -> torch.Tensor:
    """log pi(token) of each response token under a causal LM (sampling temperature applied): [B, R]."""
    import torch

    logits = model(
        input_ids=query_responses,
        attention_mask=attention_mask,
        position_ids=position_ids(attention_mask),
        use_cache=False,
    ).logits[:, context_length - 1 : -1]
    logp = torch.log_softmax(logits.float() / temperature, dim=-1)
    return logp.gather(-1, query_responses[:, context_length:].unsqueeze(-1)).squeeze(-1)


def token_scores(model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """The scalar head of a sequence-classification model at every position: [B, T].

    The value model needs a value per token; the reward model's score is this at the last token.
    Uses the backbone (`base_model_prefix`) and the `score` head that transformers' *ForSequence
    Classification models share.
    """
    backbone = getattr(model, model.base_model_prefix)
    hidden = backbone(
        input_ids=input_ids,
        attention_mask=attention_mask,
        position_ids=position_ids(attention_mask),
        use_cache=False,
    ).last_hidden_state
    return model.score(hidden).squeeze(-1).float()


def assistant_end_suffix(tokenizer: Any) -> list[int]:
    """Token ids the chat template puts after an assistant turn's end token (the newline, for the
    tiny and the ChatML templates), from rendering a dummy conversation."""
    turn = [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}]
    ids = list(tokenizer.apply_chat_template(turn, return_dict=False))
    if tokenizer.eos_token_id not in ids:
        raise ConfigError(
            f"{tokenizer.name_or_path}: the chat template does not close an assistant turn with "
            f"the end token {tokenizer.eos_token!r} that generation stops at, so PPO cannot score "
            "what the reward model was trained on; give the tokenizer that end token"
        )
    return ids[len(ids) - ids[::-1].index(tokenizer.eos_token_id) :]


def reward_model_score_fn(reward_model: Any, tokenizer: Any) -> ScoreFn:
    """Score each response as the reward model was trained and is evaluated: on the rendered turn,
    read at its last token, after the end token and the template's suffix. A response cut at
    max_new_tokens gets them appended too, as the evaluation's re-rendering does."""
    import torch

    eos = tokenizer.eos_token_id
    pad = eos if tokenizer.pad_token_id is None else tokenizer.pad_token_id
    end = torch.tensor([eos, *assistant_end_suffix(tokenizer)], dtype=torch.long)

    def score(query_responses, attention_mask, response_mask):
        context_length = query_responses.shape[1] - response_mask.shape[1]
        rows = []
        for response, length in zip(
            query_responses[:, context_length:], response_mask.sum(1).tolist(), strict=True
        ):
            kept = response[: int(length)].cpu()
            ended = len(kept) > 0 and int(kept[-1]) == eos
            rows.append(torch.cat([kept, end[1:] if ended else end]))
        width = max(len(row) for row in rows)
        completed = torch.full((len(rows), width), pad, dtype=torch.long)
        completed_mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, row in enumerate(rows):
            completed[i, : len(row)], completed_mask[i, : len(row)] = row, 1
        device = query_responses.device
        ids = torch.cat([query_responses[:, :context_length], completed.to(device)], dim=1)
        mask = torch.cat([attention_mask[:, :context_length], completed_mask.to(device)], dim=1)
        with torch.no_grad():
            scores = token_scores(reward_model, ids, mask)
        last = context_length + completed_mask.sum(1).to(device) - 1
        return scores.gather(1, last.unsqueeze(1)).squeeze(1)

    return score


class TorchEngine:
    """A plain module + optimizer with the three calls PPO makes of a DeepSpeed engine."""

    def __init__(self, module: Any, optimizer: Any, max_grad_norm: float = 1.0) -> None:
        self.module, self.optimizer, self.max_grad_norm = module, optimizer, max_grad_norm

    def backward(self, loss: torch.Tensor) -> None:
        loss.backward()

    def step(self) -> None:
        import torch

        torch.nn.utils.clip_grad_norm_(self.module.parameters(), self.max_grad_norm)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)


# --- one PPO step: rollout, score, advantages, update -----------------------------------------


@dataclass
class Rollout:
    """A batch of sampled responses and everything scored on them before any update."""

    query_responses: torch.Tensor  # [B, P + R] left-padded prompts, right-padded responses
    attention_mask: torch.Tensor  # [B, P + R]
    response_mask: torch.Tensor  # [B, R] 1 up to and including the first end-of-sequence token
    context_length: int  # P
    logprobs: torch.Tensor  # [B, R] under the policy that sampled them
    ref_logprobs: torch.Tensor  # [B, R] under the frozen reference
    values: torch.Tensor  # [B, R] value of the state before each response token
    scores: torch.Tensor  # [B] reward model on the completed chat turn


def left_pad(prompts: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids and attention mask of prompts padded on the left to one width."""
    import torch

    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for row, prompt in enumerate(prompts):
        ids[row, width - len(prompt) :] = torch.tensor(prompt, dtype=torch.long)
        mask[row, width - len(prompt) :] = 1
    return ids, mask


def sample_responses(
    model: Any, prompts: list[list[int]], cfg: PPOConfig, pad_id: int, eos_id: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
    """One response per prompt from the policy itself: (query_responses, attention_mask,
    response_mask, context_length), responses cut after their first end token."""
    import torch

    from alignment.methods.sampling import sample_from_policy

    device = next(model.parameters()).device
    query, query_mask = (t.to(device) for t in left_pad(prompts, pad_id))
    context_length = query.shape[1]
    generated = sample_from_policy(
        model, query, query_mask, max_new_tokens=cfg.max_new_tokens,
        temperature=cfg.temperature, pad_id=pad_id, eos_id=eos_id,
    )  # fmt: skip
    # Same width on every step and rank, whether or not generation stopped early.
    responses, response_mask = cut_at_eos(
        generated[:, context_length:], cfg.max_new_tokens, eos_id, pad_id
    )
    query_responses = torch.cat([query, responses], dim=1)
    attention = torch.cat([query_mask, response_mask], dim=1)
    return query_responses, attention, response_mask, context_length


def rollout(
    policy: Any,
    reference: Any,
    value: Any,
    score_fn: ScoreFn,
    prompts: list[list[int]],
    cfg: PPOConfig,
    pad_id: int,
    eos_id: int,
) -> Rollout:
    """Sample one response per prompt and score it under policy, reference, value and reward."""
    import torch

    policy.module.eval()
    with torch.no_grad():
        query_responses, attention, response_mask, context_length = sample_responses(
            policy.module, prompts, cfg, pad_id, eos_id
        )
        responses = query_responses[:, context_length:]
        logprobs = response_logprobs(
            policy.module, query_responses, attention, context_length, cfg.temperature
        )
        ref_logprobs = response_logprobs(
            reference, query_responses, attention, context_length, cfg.temperature
        )
        values = token_scores(value.module, query_responses, attention)[:, context_length - 1 : -1]
        scores = score_fn(query_responses, attention, response_mask).float()
        if cfg.missing_eos_penalty is not None:
            ended = (responses == eos_id).any(1)  # the first end-of-sequence token is kept
            scores = scores - cfg.missing_eos_penalty * (~ended).float()
    policy.module.train()
    return Rollout(
        query_responses,
        attention,
        response_mask,
        context_length,
        logprobs,
        ref_logprobs,
        values,
        scores,
    )


def rewards_and_advantages(
    batch: Rollout, cfg: PPOConfig, kl_coef: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-token rewards (score at the last token, -kl_coef * k1 on every token), whitened
    advantages, returns, and the per-token KL estimate named by cfg.kl_metric."""
    mask = batch.response_mask
    # k1 only: the one per-token reward whose expected policy gradient is grad KL(pi || ref)
    rewards = -kl_coef * kl_penalty(batch.logprobs, batch.ref_logprobs, "k1") * mask
    last = (mask.sum(1) - 1).long().unsqueeze(1)
    rewards = rewards.scatter_add(1, last, batch.scores.unsqueeze(1).to(rewards.dtype))
    if cfg.whiten_rewards:
        rewards = whiten(rewards, mask, shift_mean=False)
    advantages, returns = gae_advantages(rewards, batch.values, mask, cfg.gamma, cfg.lam)
    kl = kl_penalty(batch.logprobs, batch.ref_logprobs, cfg.kl_metric) * mask
    return rewards, whiten(advantages, mask), returns, kl


def update(
    policy: Any,
    value: Any,
    batch: Rollout,
    advantages: torch.Tensor,
    returns: torch.Tensor,
    cfg: PPOConfig,
    generator: torch.Generator,
) -> dict[str, float]:
    """ppo_epochs passes of clipped policy and value updates over the rollouts, in mini-batches
    (the last one smaller when mini_batch_size does not divide the batch)."""
    import torch

    size = batch.query_responses.shape[0]
    mini = min(cfg.mini_batch_size or size, size)
    totals: dict[str, float] = {}
    count = 0
    for _ in range(cfg.ppo_epochs):
        order = torch.randperm(size, generator=generator).to(batch.query_responses.device)
        for first in range(0, size, mini):
            idx = order[first : first + mini]
            ids, attention, mask = (
                batch.query_responses[idx],
                batch.attention_mask[idx],
                batch.response_mask[idx],
            )
            logp = response_logprobs(
                policy.module, ids, attention, batch.context_length, cfg.temperature
            )
            pg_loss, pg_clip = clipped_policy_loss(
                logp, batch.logprobs[idx], advantages[idx], mask, cfg.clip_range
            )
            kl_loss = forward_kl_loss(logp, batch.ref_logprobs[idx], mask)
            policy.backward(pg_loss + cfg.kl_loss_coef * kl_loss if cfg.kl_loss_coef else pg_loss)
            policy.step()

            values = token_scores(value.module, ids, attention)[:, batch.context_length - 1 : -1]
            vf_loss, vf_clip = clipped_value_loss(
                values, batch.values[idx], returns[idx], mask, cfg.clip_range_value
            )
            value.backward(cfg.vf_coef * vf_loss)
            value.step()

            with torch.no_grad():
                approx_kl = masked_mean(0.5 * (logp - batch.logprobs[idx]) ** 2, mask)
            for key, number in (
                ("policy/loss", pg_loss),
                ("policy/clipfrac", pg_clip),
                ("policy/approx_kl", approx_kl),
                ("policy/kl_loss", kl_loss),
                ("value/loss", vf_loss),
                ("value/clipfrac", vf_clip),
            ):
                totals[key] = totals.get(key, 0.0) + number.item()
            count += 1
    return {key: total / count for key, total in totals.items()}


def ppo_step(
    policy: Any,
    value: Any,
    reference: Any,
    score_fn: ScoreFn,
    prompts: list[list[int]],
    cfg: PPOConfig,
    kl_coef: float,
    pad_id: int,
    eos_id: int,
    generator: torch.Generator,
) -> dict[str, float]:
    """Rollout, score, advantages, update on one batch of prompts; this process's metrics."""
    batch = rollout(policy, reference, value, score_fn, prompts, cfg, pad_id, eos_id)
    rewards, advantages, returns, kl = rewards_and_advantages(batch, cfg, kl_coef)
    metrics = update(policy, value, batch, advantages, returns, cfg, generator)
    penalty = kl_penalty(batch.logprobs, batch.ref_logprobs, "k1") * batch.response_mask
    metrics.update(
        {
            "reward": float(batch.scores.mean()),  # the reward model's score, no KL
            "kl": float(kl.sum(1).mean()),  # cfg.kl_metric: what the adaptive controller sees
            "objective/rlhf_reward": float(batch.scores.mean() - kl_coef * penalty.sum(1).mean()),
            "objective/non_score_reward": float((rewards.sum(1) - batch.scores).mean()),
            "response_length": float(batch.response_mask.sum(1).float().mean()),
        }
    )
    metrics["loss"] = (
        metrics["policy/loss"]
        + cfg.kl_loss_coef * metrics["policy/kl_loss"]
        + cfg.vf_coef * metrics["value/loss"]
    )
    return metrics
