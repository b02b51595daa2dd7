"""Drawing responses from a policy's own distribution, for rollouts and for on-policy estimates.

transformers fills every generation field left unset from the checkpoint's generation_config.json
and defaults top_k to 50, so a checkpoint that ships a repetition penalty, an n-gram ban,
min_new_tokens, suppressed tokens or a time limit would make the samples off-policy: the
policy gradient loses its on-policy premise and the KL estimates their unbiasedness.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    from transformers import GenerationConfig


def policy_generation_config(
    max_new_tokens: int, temperature: float, pad_id: int, eos_id: int
) -> GenerationConfig:
    """Pure sampling at `temperature`, every other logits processor set to its neutral value."""
    from transformers import GenerationConfig

    return GenerationConfig(
        max_new_tokens=max_new_tokens,
        min_length=0,
        do_sample=True,
        num_beams=1,
        temperature=temperature,
        top_k=0,
        top_p=1.0,
        typical_p=1.0,
        epsilon_cutoff=0.0,
        eta_cutoff=0.0,
        repetition_penalty=1.0,
        encoder_repetition_penalty=1.0,
        no_repeat_ngram_size=0,
        renormalize_logits=False,
        remove_invalid_values=False,
        pad_token_id=pad_id,
        eos_token_id=eos_id,
        use_cache=True,
    )


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
    """`model.generate` from the policy itself: prompt + sampled ids, [B, P + up to max_new_tokens].

    Settings whose neutral value is "unset" (suppress_tokens, bad_words_ids, min_p, max_time,
    stop_strings, ...) cannot be overridden in a passed config, so the checkpoint's own
    generation config is set aside while sampling and put back after.
    """
    from transformers import GenerationConfig

    generation = policy_generation_config(max_new_tokens, temperature, pad_id, eos_id)
    shipped = model.generation_config
    model.generation_config = GenerationConfig()
    try:
        return model.generate(
            input_ids=input_ids, attention_mask=attention_mask, generation_config=generation
        )
    finally:
        model.generation_config = shipped
