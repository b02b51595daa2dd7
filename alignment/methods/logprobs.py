"""Log-probability maths shared by training checks and evaluation: small pure functions on tensors.

Conventions: `logits` come from `model(input_ids)` and `labels` are those same `input_ids`, so
position t of the logits scores token t + 1; the functions do that shift themselves. `mask` is 1 on
the completion tokens (the answer being scored) and 0 on prompt and padding.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch


def sequence_logprobs(
    logits: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """Sum of log p(token) over the masked (completion) tokens of each sequence: shape [batch]."""
    import torch

    logits = logits[:, :-1, :].float()
    targets = labels[:, 1:]
    keep = mask[:, 1:].to(logits.dtype)
    # A masked position may hold a padding id outside the vocabulary; any valid index will do.
    safe = torch.where(keep.bool(), targets, torch.zeros_like(targets))
    token_logps = torch.log_softmax(logits, dim=-1).gather(-1, safe.unsqueeze(-1)).squeeze(-1)
    return (token_logps * keep).sum(dim=-1)


def dpo_implicit_rewards(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    ref_chosen: torch.Tensor,
    ref_rejected: torch.Tensor,
    beta: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """DPO's implicit rewards beta * (log pi - log pi_ref) for the chosen and the rejected answers."""
    return beta * (policy_chosen - ref_chosen), beta * (policy_rejected - ref_rejected)


def encode_completion(
    tokenizer: Any, prompt: list[dict], completion: list[dict], max_length: int
) -> tuple[list[int], int]:
    """Token ids of prompt + completion through the chat template, and where the completion starts.

    Over max_length, the prompt loses tokens from its start first (the answer is what is
    scored), then the answer from its end.
    """
    prompt_ids = list(
        tokenizer.apply_chat_template(prompt, add_generation_prompt=True, return_dict=False)
    )
    full_ids = list(tokenizer.apply_chat_template(prompt + completion, return_dict=False))
    start = 0  # templates that render the prompt differently once answered: longest common prefix
    while start < min(len(prompt_ids), len(full_ids)) and prompt_ids[start] == full_ids[start]:
        start += 1
    excess = len(full_ids) - max_length
    if excess > 0:
        cut = min(excess, max(0, start - 1))  # keep at least one prompt token to predict from
        full_ids, start = full_ids[cut:], start - cut
        full_ids = full_ids[:max_length]
    return full_ids, start


def score_pairs(
    model: Any,
    tokenizer: Any,
    records: Sequence[dict],
    max_length: int = 256,
    batch_size: int = 8,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed completion log-probs of each record's chosen and rejected answer under `model`.

    Records are canonical preference records (conversational prompt/chosen/rejected).
    Returns two float tensors of shape [len(records)] on the CPU.
    """
    import torch

    pad_id = (
        tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    )
    sequences = []
    for record in records:
        for side in ("chosen", "rejected"):
            sequences.append(
                encode_completion(tokenizer, list(record["prompt"]), list(record[side]), max_length)
            )

    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    scores: list[torch.Tensor] = []
    try:
        with torch.no_grad():
            for first in range(0, len(sequences), batch_size):
                batch = sequences[first : first + batch_size]
                width = max(len(ids) for ids, _ in batch)
                input_ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
                attention = torch.zeros((len(batch), width), dtype=torch.long)
                completion = torch.zeros((len(batch), width), dtype=torch.long)
                for row, (ids, start) in enumerate(batch):
                    input_ids[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
                    attention[row, : len(ids)] = 1
                    completion[row, start : len(ids)] = 1
                logits = model(
                    input_ids=input_ids.to(device), attention_mask=attention.to(device)
                ).logits
                scores.append(
                    sequence_logprobs(logits, input_ids.to(device), completion.to(device)).cpu()
                )
    finally:
        model.train(was_training)
    flat = torch.cat(scores) if scores else torch.zeros(0)
    return flat[0::2], flat[1::2]


def add_full_vocab_lm_head(model: Any, outputs: tuple[str, ...] = ("log_probs",)) -> None:
    """Give `model` TRL's fused-head contract, computed with one plain full-vocabulary log-softmax.

    `model(..., labels=labels, fused_lm_head=True)` returns TRL's `FusedCausalLMOutput` (per-token
    log-probs of the next-token labels, 0 where the label is -100), like `trl`'s
    `add_fused_lm_head`, which it replaces. TRL tiles the LM head and recomputes the logits in
    its backward to save memory; on a CPU that tiling costs most of a DPO step. Here the head
    projects only the scored (completion) positions, once, and autograd keeps the
    [completion tokens x vocab] softmax: more memory, a fraction of the time. `outputs` names the
    extra metrics to fill (entropy, mean_logits, is_top1, log_sum_sq_probs); they are computed
    without gradient from the same logits, the entropy from the softmax the backward keeps.
    """
    import types

    import torch
    from trl.trainer.utils import FusedCausalLMOutput

    original_forward = types.MethodType(type(model).forward, model)

    @functools.wraps(type(model).forward)
    def forward(
        self, *args, fused_lm_head=False, labels=None, shift_labels=None, num_items_in_batch=None,
        **kwargs,
    ):  # fmt: skip
        if not fused_lm_head:
            for name, value in (
                ("labels", labels),
                ("shift_labels", shift_labels),
                ("num_items_in_batch", num_items_in_batch),
            ):
                if value is not None:
                    kwargs[name] = value
            return original_forward(*args, **kwargs)
        kwargs["use_cache"] = False
        hidden = self.base_model(*args, **kwargs).last_hidden_state
        if shift_labels is None:
            hidden, targets = hidden[:, :-1], labels[:, 1:]
        else:
            targets = shift_labels
        mask = targets != -100
        # The head as a module call, so ZeRO-3 gathers its weight and LoRA on it applies.
        logits = self.get_output_embeddings()(hidden[mask]).float()
        picked, entropy, log_sum_sq_probs = _selected_log_softmax().apply(
            logits, targets[mask], "entropy" in outputs, "log_sum_sq_probs" in outputs
        )

        def spread(values: torch.Tensor) -> torch.Tensor:
            # masked_scatter keeps the result attached to the graph even when nothing is scored.
            return values.new_zeros(mask.shape).masked_scatter(mask, values)

        extra: dict[str, torch.Tensor | None] = {
            "entropy": None if entropy is None else spread(entropy),
            "log_sum_sq_probs": None if log_sum_sq_probs is None else spread(log_sum_sq_probs),
            "mean_logits": None,
            "is_top1": None,
        }
        with torch.no_grad():
            if "mean_logits" in outputs:
                extra["mean_logits"] = spread(logits.mean(-1))
            if "is_top1" in outputs:
                is_top1 = logits.argmax(-1) == targets[mask]
                extra["is_top1"] = torch.zeros_like(mask).masked_scatter(mask, is_top1)
        log_probs = spread(picked)
        count = mask.sum().clamp(min=1) if num_items_in_batch is None else num_items_in_batch
        return FusedCausalLMOutput(
            loss=-log_probs.sum() / count, log_probs=log_probs, label_mask=mask, **extra
        )

    model.forward = types.MethodType(forward, model)


@functools.cache
def _selected_log_softmax() -> type:
    """The autograd function behind the full-vocabulary head (built on first use: torch is lazy)."""
    import torch

    class SelectedLogSoftmax(torch.autograd.Function):
        """log p(target) from [positions x vocab] logits by one log-softmax, and the entropy.

        d log p_t / d z = onehot(t) - p. The backward keeps the softmax p; the entropy, -sum p log p,
        needs the same p, so the two share one exponential pass. Autograd's own log-softmax
        backward would exponentiate a second time, and the gather before it would allocate and
        fill a [positions x vocab] gradient of zeros.
        """

        @staticmethod
        def forward(ctx, logits, targets, with_entropy: bool, with_log_sum_sq: bool):
            ctx.set_materialize_grads(False)
            token_logps = torch.log_softmax(logits, dim=-1)
            picked = token_logps.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
            entropy = log_sum_sq = probs = None
            if with_entropy or ctx.needs_input_grad[0]:
                probs = token_logps.exp()
            if with_entropy:
                # one dot product per position; autocast would run it in half precision
                with torch.autocast(logits.device.type, enabled=False):
                    entropy = torch.bmm(probs.unsqueeze(1), token_logps.unsqueeze(2)).view(-1).neg()
            if with_log_sum_sq:
                log_sum_sq = torch.logsumexp(2 * token_logps, dim=-1)
            ctx.mark_non_differentiable(*(x for x in (entropy, log_sum_sq) if x is not None))
            ctx.save_for_backward(probs if ctx.needs_input_grad[0] else None, targets)
            return picked, entropy, log_sum_sq

        @staticmethod
        def backward(ctx, grad_picked, *_):
            probs, targets = ctx.saved_tensors
            if grad_picked is None or probs is None:
                return None, None, None, None
            grad = probs * grad_picked.neg().unsqueeze(-1)
            grad.scatter_add_(-1, targets.unsqueeze(-1), grad_picked.unsqueeze(-1))
            return grad, None, None, None

    return SelectedLogSoftmax


def plain_head_supported(model: Any) -> bool:
    """Whether `add_full_vocab_lm_head` scores `model` exactly as its own forward does.

    Models that scale or soft-cap their logits (Gemma 2, Granite, ...) keep TRL's kernel.
    """
    config = model.config.get_text_config()
    scaled = any(
        getattr(config, name, None) not in (None, 1.0)
        for name in ("logit_scale", "output_multiplier", "lm_head_multiplier", "logits_scaling")
    )
    return not scaled and getattr(config, "final_logit_softcapping", None) is None
