"""The suite's KL is measured on the policy's own samples: checked against an exact enumeration.

A six-token vocabulary and three new tokens at most leave few enough sequences to sum
KL(policy || reference) over all of them; the suite's estimate must cover it within its interval.
The policy ships a generation_config.json with non-neutral settings that sampling must ignore.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from alignment.config import EvaluationConfig

VOCAB = ["<pad>", "<unk>", "<|end|>", "a", "b", "c"]
END = VOCAB.index("<|end|>")
MAX_NEW = 3
TEMPLATE = (
    "{% for m in messages %}{{ m['role'] }} : {{ m['content'] }} <|end|> {% endfor %}"
    "{% if add_generation_prompt %}assistant : {% endif %}"
)


def _save_tokenizer(out: Path) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.WordLevel({t: i for i, t in enumerate(VOCAB)}, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, unk_token="<unk>", pad_token="<pad>", eos_token="<|end|>"
    )
    tokenizer.chat_template = TEMPLATE
    tokenizer.save_pretrained(out)


def _save_model(out: Path, seed: int, generation: dict | None = None) -> None:
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(VOCAB),
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=128,
        pad_token_id=0,
        bos_token_id=None,
        eos_token_id=END,
        tie_word_embeddings=False,
    )
    model = LlamaForCausalLM(config)
    with torch.no_grad():
        # peaked next-token distributions, so the two models differ by a fair part of a nat
        model.lm_head.weight.mul_(40.0)
    model.save_pretrained(out)
    _save_tokenizer(out)
    if generation is not None:
        GenerationConfig(**generation).save_pretrained(out)


@pytest.fixture(scope="module")
def pair(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("six-token-models")
    # settings a checkpoint may ship that would make samples no longer come from the policy
    _save_model(root / "policy", 1, {"top_k": 2, "repetition_penalty": 1.5, "do_sample": True})
    _save_model(root / "reference", 2)
    return root / "policy", root / "reference"


def _exact_kl(policy_dir: Path, reference_dir: Path, prompt_ids: list[int]) -> float:
    """Sum over every response (ended by <|end|> or cut at MAX_NEW tokens) of p log(p / q)."""
    import torch
    from transformers import AutoModelForCausalLM

    models = [AutoModelForCausalLM.from_pretrained(d).eval() for d in (policy_dir, reference_dir)]

    def next_logps(prefix: list[int]) -> list[torch.Tensor]:
        with torch.no_grad():
            ids = torch.tensor([prefix])
            return [torch.log_softmax(m(input_ids=ids).logits[0, -1], -1) for m in models]

    def walk(prefix: list[int], logp: float, logq: float, depth: int) -> float:
        total = 0.0
        lp, lq = next_logps(prefix)
        for token in range(len(VOCAB)):
            a, b = logp + lp[token].item(), logq + lq[token].item()
            if token == END or depth + 1 == MAX_NEW:
                total += math.exp(a) * (a - b)
            else:
                total += walk([*prefix, token], a, b, depth + 1)
        return total

    return walk(list(prompt_ids), 0.0, 0.0, 0)


def test_suite_kl_covers_the_exact_sequence_kl(pair, tmp_path):
    from transformers import AutoTokenizer

    from alignment.cai.generate import encode_chat
    from alignment.evaluation.suite import evaluate_candidate

    policy, reference = pair
    prompt = [{"role": "user", "content": "a b"}]
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(
        "".join(
            json.dumps({"id": f"p{i}", "prompt": prompt, "kind": "benign"}) + "\n"
            for i in range(400)
        )
    )
    cfg = EvaluationConfig(
        max_new_tokens=MAX_NEW,
        batch_size=100,
        max_length=64,
        bootstrap_samples=400,
        seed=3,
        sycophancy_max_pairs=1,
    )
    report = tmp_path / "report"
    metrics = evaluate_candidate(policy, None, reference, None, prompts, cfg, out_dir=report)

    prompt_ids = encode_chat(AutoTokenizer.from_pretrained(policy), prompt, cfg.max_length)
    exact = _exact_kl(policy, reference, prompt_ids)
    assert exact > 0.2  # a pair that differs enough for the check to mean something
    for name in ("kl_from_reference", "kl_from_reference_k1"):
        low, high = metrics[f"{name}_ci_low"], metrics[f"{name}_ci_high"]
        assert low <= exact <= high, (name, low, metrics[name], high, exact)
        assert high - low < 0.5 * exact  # tight enough that a biased sampler falls outside

    # length bias is read on the per-token mean implicit reward: a sum grows with length anyway
    from alignment.evaluation.metrics import spearman

    samples = [json.loads(line) for line in (report / "samples.jsonl").read_text().splitlines()]
    lengths = [s["candidate_length"] for s in samples]
    assert len(set(lengths)) > 1
    per_token = [0.1 * s["kl_k1"] / s["candidate_length"] for s in samples]
    assert metrics["implicit_reward_length_corr"] == pytest.approx(spearman(per_token, lengths))


def test_sampling_applies_the_temperature_alone_whatever_the_checkpoint_ships(pair):
    from alignment.cai.generate import encode_chat, load_model
    from alignment.evaluation.sampling import sample_policy

    model, tokenizer = load_model(pair[0], "cpu")
    built = []
    original = model._get_logits_processor

    def spy(*args, **kwargs):
        built.append(original(*args, **kwargs))
        return built[-1]

    model._get_logits_processor = spy
    ids = [encode_chat(tokenizer, [{"role": "user", "content": "a"}], 64)] * 4
    drawn = sample_policy(model, tokenizer, ids, MAX_NEW, 0.7, 1.0, 4, 0)
    assert [type(p).__name__ for p in built[0]] == ["TemperatureLogitsWarper"]
    assert model.generation_config.top_k == 2  # the checkpoint's own settings are left as they were
    assert drawn.temperature == 0.7 and (drawn.lengths >= 1).all()
    # every response is its sampled ids up to and including the first end token
    for response, n in zip(drawn.response_ids, drawn.lengths, strict=True):
        assert len(response) == n and END not in response[:-1]


def test_kl_is_left_out_when_the_samples_are_not_from_the_policy(pair, tmp_path):
    from alignment.evaluation.suite import evaluate_candidate

    policy, reference = pair
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(json.dumps({"prompt": "a b", "kind": "benign"}) + "\n")
    for setting in ({"top_p": 0.5}, {"temperature": 0.0}):
        cfg = EvaluationConfig(
            max_new_tokens=MAX_NEW, bootstrap_samples=20, sycophancy_max_pairs=1, **setting
        )
        metrics = evaluate_candidate(policy, None, reference, None, prompts, cfg)
        assert not [k for k in metrics if k.startswith("kl_")], setting
        assert metrics["response_length_mean"] >= 1
