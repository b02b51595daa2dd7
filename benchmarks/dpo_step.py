"""DPO step cost: stock TRL against the platform's DPO and the floor, same model, data, batches.

Variants, each in its own process (so each has its own peak memory), in one run:
  a   TRL's DPOTrainer as a user runs it by default (reference model loaded, TRL defaults)
  a2  TRL's DPOTrainer with precompute_ref_log_probs=True (its best option)
  b   the platform's DPO (alignment.methods.dpo: full-vocabulary log-probs on CPU, cached
      reference log-probs, the platform's training arguments)
  c   the floor: the policy's own forward and backward over the chosen and rejected tokens
      with a plain log-softmax loss and AdamW, no reference, no trainer
Model: a Llama of about 16M parameters with SmolLM2's 49,152-token vocabulary, random weights
(--model smollm2-135m: SmolLM2-135M's shape). Data: random word-level token ids over the whole
vocabulary through a chat template, prompts and answers of varied length up to --max-length.
CPU: fp32, no DeepSpeed. GPU (--device cuda): bf16, DeepSpeed ZeRO-2 for a/a2/b, reports MFU.
Prints a table, writes benchmarks/results/dpo_step.json, and prints that JSON as the last line.

    python benchmarks/dpo_step.py                      # CPU, 16M model, 2 warm-up + 5 steps
    python benchmarks/dpo_step.py --device cuda --max-length 1024 --model smollm2-135m
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = ("a", "a2", "b", "c")
VOCAB = 49_152
LEARNING_RATE = 1e-4
MODELS = {
    # hidden, layers, heads, kv heads, intermediate: about 16M parameters with tied embeddings
    "llama-16m": (256, 4, 4, 4, 768),
    "smollm2-135m": (576, 30, 9, 3, 1536),
    "toy": (32, 1, 2, 2, 64),  # the same code paths in seconds (gpu_check.sh --dry-run)
}
PEAK_BF16_FLOPS = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L40S": 362e12}


def build_model_and_data(folder: Path, model: str, rows: int, max_length: int, seed: int) -> None:
    """A random-weight Llama, a word-level tokenizer over the whole vocabulary, and the pairs."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    specials = ["<pad>", "<|im_start|>", "<|im_end|>", "<unk>"]
    words = ["user", "assistant"] + [f"w{i}" for i in range(VOCAB - len(specials) - 2)]
    vocab = {tok: i for i, tok in enumerate(specials + words)}
    core = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core,
        pad_token="<pad>",
        eos_token="<|im_end|>",
        bos_token="<|im_start|>",
        unk_token="<unk>",
    )
    tokenizer.add_special_tokens({"additional_special_tokens": specials[1:3]})
    tokenizer.chat_template = (
        "{% for m in messages %}<|im_start|> {{ m['role'] }} {{ m['content'] }} <|im_end|> "
        "{% endfor %}{% if add_generation_prompt %}<|im_start|> assistant {% endif %}"
    )
    hidden, layers, heads, kv, inter = MODELS[model]
    config = LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv,
        intermediate_size=inter,
        max_position_embeddings=max(2048, max_length),
        tie_word_embeddings=True,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
    )
    torch.manual_seed(seed)
    LlamaForCausalLM(config).save_pretrained(folder / "model")
    tokenizer.save_pretrained(folder / "model")

    rng = random.Random(seed)
    n_words = len(words) - 2

    def text(n: int) -> str:
        return " ".join(f"w{rng.randrange(n_words)}" for _ in range(n))

    # Prompt 1/4 to 1/2 of the budget, each answer the rest or less: lengths vary, up to max_length.
    records = []
    for i in range(rows):
        prompt_len = rng.randint(max_length // 4, max_length // 2)
        answer_max = max_length - prompt_len - 8
        records.append(
            {
                "id": f"row{i}",
                "prompt": [{"role": "user", "content": text(prompt_len)}],
                "chosen": [
                    {"role": "assistant", "content": text(rng.randint(answer_max // 2, answer_max))}
                ],
                "rejected": [
                    {"role": "assistant", "content": text(rng.randint(answer_max // 2, answer_max))}
                ],
            }
        )
    pq.write_table(pa.Table.from_pylist(records), folder / "pairs.parquet")


def _peak_memory_mb(device: str) -> float:
    if device == "cuda":
        import torch

        return torch.cuda.max_memory_allocated() / 2**20
    # ru_maxrss is in KiB on Linux: the whole process (imports included), as a user would see it.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _step_timer():
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        def __init__(self) -> None:
            self.times: list[float] = []
            self.tokens: list[int] = []

        def on_step_begin(self, args, state, control, **kwargs):
            _sync()
            self._t0 = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            _sync()
            self.times.append(time.perf_counter() - self._t0)

    return StepTimer()


def _sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _trl_args(opts, out: Path, **kw):
    from trl import DPOConfig

    from alignment.config import DistributedConfig
    from alignment.train.deepspeed import build_deepspeed_config

    on_gpu = opts.device == "cuda"
    return DPOConfig(
        output_dir=str(out),
        per_device_train_batch_size=opts.batch_size,
        max_length=opts.max_length,
        max_steps=opts.warmup + opts.steps,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        use_cpu=not on_gpu,
        bf16=on_gpu,
        seed=opts.seed,
        # The same batches and the same updates in every variant, so their losses compare step by
        # step (TRL's default 1e-6 barely moves the policy); neither changes what a step costs.
        learning_rate=LEARNING_RATE,
        train_sampling_strategy="sequential",
        deepspeed=build_deepspeed_config(DistributedConfig(zero_stage=2), "cuda")
        if on_gpu
        else None,
        **kw,
    )


def _platform_args(opts, folder: Path, out: Path):
    """The platform's own DPO arguments (alignment.train.entry.training_arguments), as a job gets them."""
    from trl import DPOConfig

    from alignment.config import PipelineConfig
    from alignment.train.entry import Job, training_arguments

    cfg = PipelineConfig.model_validate(
        {
            "workspace": {"root": str(folder / "workspace")},
            "train": {
                "dpo": {
                    "per_device_train_batch_size": opts.batch_size,
                    "max_length": opts.max_length,
                    "max_steps": opts.warmup + opts.steps,
                    "seed": opts.seed,
                    "save_steps": 10_000,
                    "learning_rate": LEARNING_RATE,
                },
                "distributed": {"num_processes": 1, "zero_stage": 2, "device": opts.device},
            },
        }
    )
    job = Job("dpo", cfg, folder / "model", folder / "pairs.parquet", None, out, False, opts.device)
    kwargs = training_arguments(job, cfg.train.dpo)
    if opts.device == "cpu":
        kwargs["deepspeed"] = None  # a single CPU process: as a, a2 and c, no DeepSpeed
    kwargs.update(output_dir=str(out), save_strategy="no", train_sampling_strategy="sequential")
    method = cfg.train.dpo
    args = DPOConfig(
        **kwargs,
        beta=method.beta,
        loss_type=[method.loss_type],
        label_smoothing=method.label_smoothing,
        precompute_ref_log_probs=True,
    )
    return job, args


def run_variant(opts, variant: str, folder: Path) -> dict:
    """One variant in this process: median s/step, tokens/s, peak memory, the first step's loss."""
    import torch
    from datasets import Dataset
    from transformers import AutoTokenizer
    from trl import DPOTrainer

    torch.set_num_threads(opts.threads or torch.get_num_threads())
    if opts.device == "cuda":
        for name, value in (("RANK", "0"), ("WORLD_SIZE", "1"), ("LOCAL_RANK", "0")):
            os.environ.setdefault(name, value)
        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
        os.environ.setdefault("MASTER_PORT", "29517")
    model_dir = folder / "model"
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    data = Dataset.from_parquet(str(folder / "pairs.parquet"))
    out = folder / f"out-{variant}"
    extra: dict = {}
    if variant == "c":
        return _run_floor(opts, model_dir, tokenizer, data)
    t0 = time.perf_counter()
    timer = _step_timer()
    if variant in ("a", "a2"):
        args = _trl_args(opts, out, precompute_ref_log_probs=variant == "a2")
        trainer = DPOTrainer(
            model=str(model_dir),
            args=args,
            train_dataset=data.remove_columns("id"),
            processing_class=tokenizer,
            callbacks=[timer],
        )
        extra["gradient_checkpointing"] = bool(args.gradient_checkpointing)
    else:
        from alignment.methods.dpo import (
            reference_cache_files,
            trainer_class,
            use_full_vocab_logprobs,
        )

        job, args = _platform_args(opts, folder, out)
        cache, meta = reference_cache_files(job, args)
        full = use_full_vocab_logprobs(job.cfg.train.dpo.logprobs, opts.device)
        trainer = trainer_class()(
            model=str(model_dir),
            args=args,
            train_dataset=data,
            processing_class=tokenizer,
            callbacks=[timer],
            full_vocab_logprobs=full,
            reference_cache=cache,
            reference_cache_meta=meta,
        )
        extra["gradient_checkpointing"] = bool(args.gradient_checkpointing)
        extra["logprobs"] = "full" if full else "chunked"
        extra["reference_cache"] = trainer.reference_cache_events
    extra["setup_seconds"] = time.perf_counter() - t0
    trainer.train()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    tokens = _tokens_per_step(trainer.train_dataset, opts)
    return _summary(opts, variant, timer.times, tokens, losses, trainer.model, extra)


def _tokens_per_step(dataset, opts) -> list[int]:
    """Non-padding tokens (prompt + answer, chosen and rejected, truncated) of each batch, in order."""
    counts = []
    for first in range(0, len(dataset), opts.batch_size):
        total = 0
        for row in dataset.select(range(first, min(first + opts.batch_size, len(dataset)))):
            for side in ("chosen_ids", "rejected_ids"):
                total += min(opts.max_length, len(row["prompt_ids"]) + len(row[side]))
        counts.append(total)
    return counts


def _run_floor(opts, model_dir: Path, tokenizer, data) -> dict:
    """Policy forward + backward over chosen and rejected with a plain log-softmax, and AdamW."""
    import torch
    from transformers import AutoModelForCausalLM
    from trl.trainer.dpo_trainer import DataCollatorForPreference

    device = torch.device(opts.device)
    dtype = torch.bfloat16 if opts.device == "cuda" else torch.float32
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).to(device)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=LEARNING_RATE)
    collate = DataCollatorForPreference(
        pad_token_id=tokenizer.pad_token_id, max_length=opts.max_length
    )
    rows = []
    for record in data:  # the same tokenization as TRL's (prompt, then where the answer starts)
        prompt = tokenizer.apply_chat_template(
            record["prompt"], add_generation_prompt=True, return_dict=False
        )
        ids = {}
        for side in ("chosen", "rejected"):
            full = tokenizer.apply_chat_template(record["prompt"] + record[side], return_dict=False)
            assert full[: len(prompt)] == prompt
            ids[f"{side}_ids"] = full[len(prompt) :]
        rows.append({"prompt_ids": prompt, **ids})
    times, tokens, losses = [], [], []
    for step in range(opts.warmup + opts.steps):
        first = step * opts.batch_size % len(rows)
        batch = collate(rows[first : first + opts.batch_size])
        input_ids = batch["input_ids"].to(device)
        mask = batch["completion_mask"][:, 1:].to(device)
        _sync()
        t0 = time.perf_counter()
        with torch.autocast(opts.device, dtype=dtype, enabled=opts.device == "cuda"):
            logits = model(
                input_ids=input_ids, attention_mask=batch["attention_mask"].to(device)
            ).logits
        logps = torch.log_softmax(logits[:, :-1].float(), dim=-1)
        token_logps = logps.gather(-1, input_ids[:, 1:].unsqueeze(-1)).squeeze(-1)
        loss = -(token_logps * mask).sum() / mask.sum()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        _sync()
        times.append(time.perf_counter() - t0)
        tokens.append(int(batch["attention_mask"].sum()))
        losses.append(loss.item())
    return _summary(opts, "c", times, tokens, losses, model, {"gradient_checkpointing": False})


def _summary(opts, variant, times, tokens, losses, model, extra) -> dict:
    measured = times[opts.warmup :]
    step_tokens = tokens[opts.warmup : opts.warmup + len(measured)]
    per_step = statistics.median(measured)
    tokens_per_s = statistics.median(t / s for t, s in zip(step_tokens, measured, strict=False))
    result = {
        "variant": variant,
        "s_per_step": per_step,
        "step_times": measured,
        "tokens_per_s": tokens_per_s,
        "peak_memory_mb": _peak_memory_mb(opts.device),
        "losses": losses,
        **extra,
    }
    if opts.device == "cuda":
        result["mfu"] = _mfu(model, tokens_per_s, opts)
    return result


def _mfu(model, tokens_per_s: float, opts) -> float | None:
    """Model FLOPs utilisation of the policy's training work: 6 x matmul params x tokens + attention."""
    import torch

    model = getattr(model, "module", model)
    config = model.config
    params = sum(p.numel() for p in model.parameters())
    embed = config.vocab_size * config.hidden_size
    matmul_params = params - embed + (embed if config.tie_word_embeddings else 0)
    flops_per_token = (
        6 * matmul_params + 12 * config.num_hidden_layers * config.hidden_size * opts.max_length
    )
    name = torch.cuda.get_device_name()
    peak = opts.peak_tflops * 1e12 if opts.peak_tflops else None
    for key, value in PEAK_BF16_FLOPS.items():
        if peak is None and key in name:
            peak = value
    return flops_per_token * tokens_per_s / peak if peak else None


def _table(results: dict) -> str:
    lines = [
        f"{'variant':8} {'s/step':>8} {'tokens/s':>10} {'peak MB':>9} {'loss@last':>12} {'MFU':>6}"
    ]
    for v in VARIANTS:
        r = results[v]
        mfu = f"{r['mfu']:.3f}" if r.get("mfu") is not None else "-"
        lines.append(
            f"{v:8} {r['s_per_step']:8.3f} {r['tokens_per_s']:10.0f} {r['peak_memory_mb']:9.0f} "
            f"{r['losses'][-1]:12.7f} {mfu:>6}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=sorted(MODELS), default="llama-16m")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--max-length", type=int, default=None, help="256 on CPU, 1024 on GPU")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--peak-tflops", type=float, default=None, help="GPU bf16 peak, for MFU")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument(
        "--output", type=Path, default=ROOT / "benchmarks" / "results" / "dpo_step.json"
    )
    parser.add_argument("--_variant", help=argparse.SUPPRESS)
    parser.add_argument("--_folder", type=Path, help=argparse.SUPPRESS)
    opts = parser.parse_args(argv)
    opts.max_length = opts.max_length or (1024 if opts.device == "cuda" else 256)

    if opts._variant:  # a child process: one variant, its JSON on the last line
        print(json.dumps(run_variant(opts, opts._variant, opts._folder)), flush=True)
        return 0

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    results: dict = {}
    with tempfile.TemporaryDirectory(prefix="dpo-step-") as tmp:
        folder = Path(tmp)
        rows = opts.batch_size * (opts.warmup + opts.steps)
        build_model_and_data(folder, opts.model, rows, opts.max_length, opts.seed)
        own_args = [
            a for a in (argv if argv is not None else sys.argv[1:]) if not a.startswith("--_")
        ]
        for variant in opts.variants.split(","):
            command = [
                sys.executable,
                __file__,
                *own_args,
                "--_variant",
                variant,
                "--_folder",
                str(folder),
            ]
            proc = subprocess.run(command, env=env, capture_output=True, text=True)
            if proc.returncode != 0:
                sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-6000:])
                raise SystemExit(f"variant {variant} failed (exit {proc.returncode})")
            results[variant] = json.loads(proc.stdout.strip().splitlines()[-1])
            print(
                f"{variant}: {results[variant]['s_per_step']:.3f} s/step",
                file=sys.stderr,
                flush=True,
            )

    import torch

    ratios = {}
    for num, den in (("b", "a"), ("b", "a2"), ("b", "c")):
        if num in results and den in results:
            ratios[f"{num}/{den}"] = results[num]["s_per_step"] / results[den]["s_per_step"]
    # DPO's loss is log 2 at step 1 whatever the code (policy == reference): compare every step.
    losses = {v: results[v]["losses"] for v in ("a", "a2", "b") if v in results}
    report = {
        "benchmark": "dpo_step",
        "model": opts.model,
        "device": opts.device if opts.device == "cpu" else torch.cuda.get_device_name(),
        "threads": opts.threads or torch.get_num_threads(),
        "batch_size": opts.batch_size,
        "max_length": opts.max_length,
        "warmup_steps": opts.warmup,
        "measured_steps": opts.steps,
        "variants": results,
        "ratios": ratios,
        "loss_max_abs_diff_vs_a": max(
            abs(x - y) for v in losses.values() for x, y in zip(v, losses["a"], strict=True)
        )
        if "a" in losses
        else None,
        "targets": {"b/c": 1.15, "b/a": 0.45, "b/a2": 0.6, "loss_abs_diff": 1e-5, "gpu_mfu": 0.4},
    }
    if set(VARIANTS) <= set(results):
        print(_table(results))
        print("  ".join(f"{k} {v:.3f}" for k, v in ratios.items()))
    opts.output.parent.mkdir(parents=True, exist_ok=True)
    opts.output.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
