"""Samples from the policy itself, kept as the token ids it drew, and their log-probabilities.

transformers fills every generation setting left unset from the checkpoint's
``generation_config.json`` and defaults ``top_k`` to 50, so a plain ``generate`` call samples
from a truncated, penalised distribution. Here every logits processor is set neutral and the
checkpoint's own config is set aside while sampling; only the temperature (and ``top_p`` if
asked) shapes the distribution. KL and other on-policy figures are computed on the sampled ids;
the decoded text is for judges and reward models only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from alignment.methods.sampling import checkpoint_settings_aside, policy_generation_config


@dataclass
class PolicySamples:
    """One sampled response per prompt, as ids, with the policy's per-token log-probs."""

    prompt_ids: list[list[int]]
    response_ids: list[list[int]]  # up to and including the first end token, if one was drawn
    logps: np.ndarray  # [n, longest response], 0 past each response
    mask: np.ndarray  # [n, longest response], 1 on sampled tokens
    texts: list[str]  # decoded without special tokens, for judges and reward models
    temperature: float  # the log-probs are of pi_T; 1.0 after greedy decoding
    end_id: int  # the end-of-turn token that stops a response

    @property
    def lengths(self) -> np.ndarray:
        """Sampled tokens per response, the end token included when it was drawn."""
        return self.mask.sum(axis=1)


def cut_after_end(row: Sequence[int], end_id: int) -> list[int]:
    """The sampled tokens up to and including the first end token (all of them if none)."""
    row = list(row)
    return row[: row.index(end_id) + 1] if end_id in row else row


def sample_policy(
    model: Any,
    tokenizer: Any,
    prompt_ids: Sequence[Sequence[int]],
    max_new_tokens: int,
    temperature: float,
    top_p: float,
    batch_size: int,
    seed: int,
) -> PolicySamples:
    """Sample one response per prompt (token ids) from `model` as it is; score it under `model`.

    Temperature 0 decodes greedily (then the log-probs are at temperature 1).
    """
    import torch

    from alignment.cai.generate import clean_text, left_pad, pad_id

    pad, eos = pad_id(tokenizer), tokenizer.eos_token_id
    generation = policy_generation_config(max_new_tokens, temperature or 1.0, pad, eos, top_p)
    generation.do_sample = temperature > 0
    temperature = temperature or 1.0
    device = next(model.parameters()).device
    responses: list[list[int]] = [[] for _ in prompt_ids]
    torch.manual_seed(seed)
    with torch.no_grad(), checkpoint_settings_aside(model):
        for first in range(0, len(prompt_ids), batch_size):
            rows = list(range(first, min(first + batch_size, len(prompt_ids))))
            input_ids, attention, _ = left_pad([prompt_ids[i] for i in rows], pad)
            out = model.generate(
                input_ids=input_ids.to(device),
                attention_mask=attention.to(device),
                generation_config=generation,
            )
            for i, ids in zip(rows, out[:, input_ids.shape[1] :].cpu().tolist(), strict=True):
                responses[i] = cut_after_end(ids, eos)
    prompts = [list(p) for p in prompt_ids]
    logps, mask = response_logprobs(model, tokenizer, prompts, responses, temperature, batch_size)
    # what a judge or reward model reads; the log-probs never come from re-encoding it
    texts = [clean_text(tokenizer.decode(r, skip_special_tokens=True)) for r in responses]
    return PolicySamples(prompts, responses, logps, mask, texts, temperature, eos)


def response_logprobs(
    model: Any,
    tokenizer: Any,
    prompt_ids: Sequence[Sequence[int]],
    response_ids: Sequence[Sequence[int]],
    temperature: float,
    batch_size: int,
) -> tuple[np.ndarray, np.ndarray]:
    """log pi_T(token) of each response token after its prompt, logits divided by `temperature`."""
    import torch

    from alignment.cai.generate import left_pad, pad_id

    pad = pad_id(tokenizer)
    width = max([1, *(len(r) for r in response_ids)])
    logps = np.zeros((len(response_ids), width))
    mask = np.zeros_like(logps)
    device = next(model.parameters()).device
    with torch.no_grad():
        for first in range(0, len(prompt_ids), batch_size):
            rows = list(range(first, min(first + batch_size, len(prompt_ids))))
            query, query_mask, _ = left_pad([prompt_ids[i] for i in rows], pad)
            answer = torch.full((len(rows), width), pad, dtype=torch.long)
            answer_mask = torch.zeros((len(rows), width), dtype=torch.long)
            for k, i in enumerate(rows):
                n = len(response_ids[i])
                answer[k, :n] = torch.tensor(response_ids[i], dtype=torch.long)
                answer_mask[k, :n] = 1
            ids = torch.cat([query, answer], 1).to(device)
            attention = torch.cat([query_mask, answer_mask], 1).to(device)
            # positions count real tokens only: a row is scored as it would be alone
            positions = (attention.cumsum(-1) - 1).clamp(min=0)
            context = query.shape[1]
            logits = model(
                input_ids=ids, attention_mask=attention, position_ids=positions, use_cache=False
            ).logits[:, context - 1 : -1]
            token_logps = torch.log_softmax(logits.float() / temperature, -1)
            token_logps = token_logps.gather(-1, ids[:, context:].unsqueeze(-1)).squeeze(-1)
            chunk = (token_logps * answer_mask.to(device)).cpu().numpy()
            logps[first : first + len(rows)] = chunk
            mask[first : first + len(rows)] = answer_mask.numpy()
    return logps, mask
