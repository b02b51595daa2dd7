"""Drawing responses from a policy's own distribution, for rollouts and for on-policy estimates.

transformers fills every generation field left unset from the checkpoint's generation_config.json
and defaults top_k to 50, so a checkpoint that ships a repetition penalty, an n-gram ban,
min_new_tokens, suppressed tokens or a time limit would make the samples off-policy: the
policy gradient loses its on-policy premise and the KL estimates their unbiasedness.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    from transformers import GenerationConfig


# Every processor a checkpoint's generation_config.json can switch on, at its neutral value.
# Fields whose neutral value is None are covered by setting the model's own config aside.
NEUTRAL_PROCESSORS: dict[str, Any] = {
    "top_k": 0,
    "typical_p": 1.0,
    "epsilon_cutoff": 0.0,
    "eta_cutoff": 0.0,
    "repetition_penalty": 1.0,
    "encoder_repetition_penalty": 1.0,
    "no_repeat_ngram_size": 0,
    "encoder_no_repeat_ngram_size": 0,
    "min_length": 0,
    "length_penalty": 1.0,
    "renormalize_logits": False,
    "remove_invalid_values": False,
    "num_beams": 1,
}


def policy_generation_config(
    max_new_tokens: int, temperature: float, pad_id: int, eos_id: int, top_p: float = 1.0
) -> GenerationConfig:
    """Pure sampling at `temperature` (and `top_p` if asked), every other processor neutral."""
    from transformers import GenerationConfig

    return GenerationConfig(
        max_new_tokens=max_new_tokens,
        do_sample=True,
        temperature=temperature,
        top_p=top_p,
        pad_token_id=pad_id,
        eos_token_id=eos_id,
        use_cache=True,
        **NEUTRAL_PROCESSORS,
    )


@contextlib.contextmanager
def checkpoint_settings_aside(model: Any) -> Iterator[None]:
    """Replace the model's generation config by an empty one, so no unset field inherits from it.

    Settings whose neutral value is "unset" (suppress_tokens, bad_words_ids, min_p, max_time,
    stop_strings, ...) cannot be overridden in a passed config; the checkpoint's own config is
    put back after, so the policy is saved with its settings.
    """
    from transformers import GenerationConfig

    saved = model.generation_config
    model.generation_config = GenerationConfig()
    try:
        yield
    finally:
        model.generation_config = saved


def sample_from_policy(
    model: Any,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    *,
    max_new_tokens: int,
    temperature: float,
    pad_id: int,
    eos_id: int,
) -> torch.Tensor:
    """`model.generate` from the policy itself: prompt + sampled ids, [B, P + up to max_new_tokens]."""
    generation = policy_generation_config(max_new_tokens, temperature, pad_id, eos_id)
    with checkpoint_settings_aside(model):
        return model.generate(
            input_ids=input_ids, attention_mask=attention_mask, generation_config=generation
        )
