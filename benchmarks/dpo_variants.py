"""The variants that benchmarks/dpo_step.py measures, each run in one process: TRL's DPOTrainer
(a, a2, a3), the platform's DPO (b) and the floor (c), on the model and data built here; each
returns its median s/step, tokens/s, peak memory, losses and (on a GPU) MFU. What each variant
does, and how the harness interleaves them, is in dpo_step.py's docstring.
"""

from __future__ import annotations

import os
import random
import resource
import statistics
import time
from pathlib import Path

VOCAB = 49_152
BETA = 0.1  # the platform's default train.dpo.beta; every variant uses it
LEARNING_RATE = 1e-4
MODELS = {
    # hidden, layers, heads, kv heads, intermediate: about 16M parameters with tied embeddings
    "llama-16m": (256, 4, 4, 4, 768),
    "smollm2-135m": (576, 30, 9, 3, 1536),
    "toy": (32, 1, 2, 2, 64),  # the same code paths in seconds (--smoke, gpu_check.sh --dry-run)
}
PEAK_BF16_FLOPS = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L40S": 362e12}


def build_model_and_data(
    folder: Path, model: str, rows: int, max_length: int, seed: int, vocab_size: int = VOCAB
) -> None:
    """A random-weight Llama, a word-level tokenizer over the whole vocabulary, and the pairs."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    specials = ["<pad>", "<|im_start|>", "<|im_end|>", "<unk>"]
    words = ["user", "assistant"] + [f"w{i}" for i in range(vocab_size - len(specials) - 2)]
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
        vocab_size=vocab_size,
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
        beta=BETA,
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
                    "beta": BETA,
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
    if variant in ("a", "a2", "a3"):
        flags = {"precompute_ref_log_probs": variant in ("a2", "a3")}
        if variant == "a3":
            flags["gradient_checkpointing"] = False
        args = _trl_args(opts, out, **flags)
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
    work = _work_per_step(trainer.train_dataset, opts)
    return _summary(opts, variant, timer.times, work, losses, trainer.model, extra)


def _work_per_step(dataset, opts) -> list[dict]:
    """Per batch, in order: non-padding tokens, completion positions (those the head scores),
    and the sum of squared real lengths (attention), chosen and rejected, truncated."""
    steps = []
    for first in range(0, len(dataset), opts.batch_size):
        work = {"tokens": 0, "completion": 0, "length_sq": 0}
        for row in dataset.select(range(first, min(first + opts.batch_size, len(dataset)))):
            for side in ("chosen_ids", "rejected_ids"):
                length = min(opts.max_length, len(row["prompt_ids"]) + len(row[side]))
                work["tokens"] += length
                work["completion"] += max(0, length - len(row["prompt_ids"]))
                work["length_sq"] += length * length
        steps.append(work)
    return steps


def _run_floor(opts, model_dir: Path, tokenizer, data) -> dict:
    """The least work that gives the same DPO update (dpo_step.py's docstring, variant c)."""
    import torch
    import torch.nn.functional as F
    from datasets import Dataset
    from transformers import AutoModelForCausalLM
    from trl.trainer.dpo_trainer import DataCollatorForPreference

    device = torch.device(opts.device)
    dtype = torch.bfloat16 if opts.device == "cuda" else torch.float32
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).to(device)
    model.train()
    # the trainers' defaults, so that the floor makes the same update with the same kernels:
    # transformers' fused AdamW without weight decay (torch's own default, a per-tensor loop with
    # weight decay 0.01, costs several times the fused step and makes a different update),
    # gradients clipped to norm 1.0, the learning rate decayed linearly to 0 over the run
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=LEARNING_RATE, weight_decay=0.0, fused=True
    )
    total = opts.warmup + opts.steps
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1 - step / total)
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
    batches = []
    for step in range(opts.warmup + opts.steps):
        first = step * opts.batch_size % len(rows)
        batches.append(collate(rows[first : first + opts.batch_size]))

    def sequence_logps(batch) -> torch.Tensor:
        input_ids = batch["input_ids"].to(device)
        scored = batch["completion_mask"][:, 1:].to(device).bool()
        with torch.autocast(opts.device, dtype=dtype, enabled=opts.device == "cuda"):
            hidden = model.model(
                input_ids=input_ids, attention_mask=batch["attention_mask"].to(device)
            ).last_hidden_state
            logits = model.lm_head(hidden[:, :-1][scored])  # completion positions only
        token_logps = torch.log_softmax(logits.float(), dim=-1)
        picked = token_logps.gather(-1, input_ids[:, 1:][scored].unsqueeze(-1)).squeeze(-1)
        rows_of = torch.arange(input_ids.shape[0], device=device).unsqueeze(1).expand_as(scored)
        return torch.zeros(input_ids.shape[0], device=device).index_add(0, rows_of[scored], picked)

    # the reference log-probs come with the batch, as precomputed ones do: not timed
    with torch.no_grad():
        references = [sequence_logps(batch).detach() for batch in batches]
    times, losses = [], []
    for batch, reference in zip(batches, references, strict=True):
        _sync()
        t0 = time.perf_counter()
        logps = sequence_logps(batch)
        half = logps.shape[0] // 2
        margin = (logps[:half] - reference[:half]) - (logps[half:] - reference[half:])
        loss = -F.logsigmoid(BETA * margin).mean()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        _sync()
        times.append(time.perf_counter() - t0)
        losses.append(loss.item())
    work = _work_per_step(Dataset.from_list(rows), opts)
    return _summary(opts, "c", times, work, losses, model, {"gradient_checkpointing": False})


def _summary(opts, variant, times, work, losses, model, extra) -> dict:
    measured = times[opts.warmup :]
    step_work = work[opts.warmup : opts.warmup + len(measured)]
    per_step = statistics.median(measured)
    tokens_per_s = statistics.median(
        w["tokens"] / s for w, s in zip(step_work, measured, strict=False)
    )
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
        flops = [_useful_flops(model, w) for w in step_work]
        result["mfu"] = _mfu(
            statistics.median(f / s for f, s in zip(flops, measured, strict=False)), opts
        )
    return result


def _useful_flops(model, work: dict) -> float:
    """The training FLOPs of one step's useful work, whatever a variant computes on top:
    6 x backbone matmul parameters x real tokens, 6 x head parameters x completion positions
    (the only ones scored), and attention at each sequence's real length."""
    model = getattr(model, "module", model)
    config = model.config
    params = sum(p.numel() for p in model.parameters())
    embed = config.vocab_size * config.hidden_size
    backbone = params - embed - (0 if config.tie_word_embeddings else embed)
    attention = 12 * config.num_hidden_layers * config.hidden_size * work["length_sq"]
    return 6 * backbone * work["tokens"] + 6 * embed * work["completion"] + attention


def _mfu(flops_per_s: float, opts) -> float | None:
    """Model FLOPs utilisation: useful FLOPs per second over the device's bf16 peak."""
    import torch

    name = torch.cuda.get_device_name()
    peak = opts.peak_tflops * 1e12 if opts.peak_tflops else None
    for key, value in PEAK_BF16_FLOPS.items():
        if peak is None and key in name:
            peak = value
    return flops_per_s / peak if peak else None
