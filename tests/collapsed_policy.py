"""A reward-hacked policy on demand: the tiny model collapsed to one answer for every prompt.

What a policy that games its reward often becomes ("Excellent." to everything), built in a
second instead of trained: every layer writes nothing into the residual stream (attention and
MLP output projections zero), so the next token depends on the current token alone, and
untied input and output embeddings chain the answer's tokens: any token -> the answer's first,
each answer token -> the next, the last -> end of turn. At temperature 1 the chosen token's
logit is hundreds above the rest: the sampled answer is the same every time. The answer is
one token added to the tokenizer (the tiny byte-level vocabulary spells it with repeats).
"""

from __future__ import annotations

import itertools
from pathlib import Path

ANSWER = "Excellent product, five stars!"


def build_collapsed_policy(tiny_model_dir: Path, out: Path, answer: str = ANSWER) -> Path:
    """Save to `out` a copy of the tiny model that answers `answer` to every prompt."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    tokenizer.add_tokens([answer])
    chain = [*tokenizer.encode(answer, add_special_tokens=False), tokenizer.eos_token_id]
    if len(set(chain)) != len(chain):
        raise ValueError(f"{answer!r} repeats a token; the chain needs distinct tokens")
    config = AutoConfig.from_pretrained(str(tiny_model_dir))
    config.tie_word_embeddings = False
    config.vocab_size = len(tokenizer)
    model = AutoModelForCausalLM.from_config(config)
    hidden = config.hidden_size
    if len(chain) > hidden:
        raise ValueError(f"{answer!r} has more tokens than the model has dimensions")
    basis = torch.eye(hidden)
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        model.model.norm.weight.fill_(1.0)
        embed = model.model.embed_tokens.weight
        head = model.lm_head.weight
        embed.copy_(basis[0].expand_as(embed))  # every token not in the answer: direction 0
        head.zero_()
        head[chain[0]] = 50 * basis[0]  # ... is followed by the answer's first token
        for i, (token, following) in enumerate(itertools.pairwise(chain), 1):
            embed[token] = basis[i]
            head[following] = 50 * basis[i]
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
    return out
