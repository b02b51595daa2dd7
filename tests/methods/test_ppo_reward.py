"""PPO reads the reward model where it was trained and where the evaluation reads it: on the whole
rendered chat turn, the template's text after the end token included."""

from __future__ import annotations

import pytest

# SmolLM2-Instruct's ChatML template (a default system turn, then <|im_start|>role\n...<|im_end|>\n).
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging "
    "Face<|im_end|>\n' }}{% endif %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


@pytest.fixture(scope="module", params=["tiny", "chatml"])
def reward_model_dir(request, tiny_model_dir, tmp_path_factory):
    """A reward model with a random score head, under the tiny template or SmolLM2's ChatML."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    if request.param == "chatml":
        tokenizer.add_special_tokens(
            {"eos_token": "<|im_end|>", "additional_special_tokens": ["<|im_start|>"]}
        )
        tokenizer.chat_template = CHATML_TEMPLATE
    torch.manual_seed(1)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir, num_labels=1)
    model.resize_token_embeddings(len(tokenizer))
    torch.nn.init.normal_(model.score.weight, std=1.0)
    model.config.pad_token_id = tokenizer.pad_token_id
    path = tmp_path_factory.mktemp(f"rm-{request.param}")
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def test_ppo_scores_a_response_as_the_evaluation_judge_does(reward_model_dir):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from alignment.evaluation.judges import RewardModelJudge
    from alignment.methods.ppo import cut_at_eos, left_pad, prompt_ids, reward_model_score_fn

    tokenizer = AutoTokenizer.from_pretrained(reward_model_dir)
    pad, eos = tokenizer.pad_token_id, tokenizer.eos_token_id
    width = 6  # max_new_tokens: the third response is cut there, before its end token
    conversations = [
        ([{"role": "user", "content": "What is 2 plus 3?"}], "5.", True),
        ([{"role": "user", "content": "What is 4 plus 1?"}], "I refuse to answer.", True),
        ([{"role": "user", "content": "What is 1 plus 1?"}], "1 plus 1 is 2, and 2 plus 2 is 4.", False),
    ]  # fmt: skip
    sampled, texts = [], []
    for _, text, ended in conversations:
        ids = tokenizer.encode(text, add_special_tokens=False)
        ids = [*ids, eos] if ended else ids[:width]
        assert len(ids) <= width
        sampled.append(ids + [pad] * (width - len(ids)))
        texts.append(tokenizer.decode(ids, skip_special_tokens=True))
    responses, response_mask = cut_at_eos(torch.tensor(sampled), width, eos, pad)
    assert response_mask.sum(1).tolist() == [len(tokenizer.encode(t)) + e for t, e in
                                             zip(texts, [1, 1, 0], strict=True)]  # fmt: skip
    prompts = prompt_ids(tokenizer, {"prompt": [p for p, _, _ in conversations]}, 256)
    query, query_mask = left_pad(prompts, pad)
    query_responses = torch.cat([query, responses], dim=1)
    attention = torch.cat([query_mask, response_mask], dim=1)

    reward_model = AutoModelForSequenceClassification.from_pretrained(reward_model_dir).eval()
    ppo = reward_model_score_fn(reward_model, tokenizer)(query_responses, attention, response_mask)
    judge = RewardModelJudge(reward_model_dir, device="cpu").score(
        [p for p, _, _ in conversations], texts
    )
    torch.testing.assert_close(ppo, torch.tensor(judge), atol=1e-4, rtol=0)
    assert len({round(s, 3) for s in judge}) == 3  # a head that tells the responses apart


def test_a_template_without_the_end_token_is_refused(tiny_model_dir):
    from transformers import AutoTokenizer

    from alignment.errors import ConfigError
    from alignment.methods.ppo import assistant_end_suffix

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    assert tokenizer.convert_ids_to_tokens(assistant_end_suffix(tokenizer)) == ["Ċ"]
    tokenizer.chat_template = "{% for m in messages %}{{ m['content'] + '\n' }}{% endfor %}"
    with pytest.raises(ConfigError, match="end token"):
        assistant_end_suffix(tokenizer)
