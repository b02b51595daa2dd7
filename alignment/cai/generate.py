"""Batched chat generation with the KV cache, in this process or in one process per GPU.

Prompts are rendered with the tokenizer's chat template, cut from the left to ``max_length``
tokens, sorted by length and left-padded into batches (so every row's next token is at the last
position), then passed to ``model.generate`` with ``use_cache=True``. Results come back in the
order asked.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

Conversation = list[dict]
# Control characters (but tab and newline) and U+FFFD come from decoding broken byte sequences;
# the data validation rejects them, and they carry no text.
_GARBAGE = re.compile("[\x00-\x08\x0b-\x1f\x7f\ufffd]")


def clean_text(text: str) -> str:
    """Generated text without decoding debris (control characters, replacement characters)."""
    return _GARBAGE.sub("", text).strip()


@dataclass(frozen=True)
class GenerationSettings:
    """How texts are sampled."""

    max_new_tokens: int = 128
    temperature: float = 0.0  # 0: greedy
    top_p: float = 0.95
    batch_size: int = 8
    max_length: int = 1024  # prompt tokens; longer prompts lose their start
    seed: int = 0

    @classmethod
    def from_config(cls, cai: Any, temperature: float) -> GenerationSettings:
        """Settings of a CAIConfig, at the given temperature."""
        return cls(
            max_new_tokens=cai.max_new_tokens,
            temperature=temperature,
            top_p=cai.top_p,
            batch_size=cai.generation_batch_size,
            max_length=cai.max_length,
            seed=cai.seed,
        )


def load_model(path: Path | str, device: str = "auto") -> tuple[Any, Any]:
    """A causal LM (eval mode, safetensors, no remote code) and its tokenizer set to pad left."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    tokenizer = AutoTokenizer.from_pretrained(str(path), trust_remote_code=False)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(
        str(path), trust_remote_code=False, dtype=dtype, use_safetensors=True
    ).to(device)
    model.eval()
    return model, tokenizer


def pad_id(tokenizer: Any) -> int:
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id


def encode_chat(
    tokenizer: Any, conversation: Conversation, max_length: int, suffix: str = ""
) -> list[int]:
    """Token ids of a conversation ready for the assistant's turn, plus `suffix` (text the
    assistant's answer starts with), keeping the last `max_length` tokens."""
    text = tokenizer.apply_chat_template(conversation, add_generation_prompt=True, tokenize=False)
    ids = tokenizer(text + suffix, add_special_tokens=False)["input_ids"]
    return list(ids[-max_length:])


def left_pad(
    rows: Sequence[Sequence[int]], pad: int, starts: Sequence[int] | None = None
) -> tuple[Any, Any, Any]:
    """input_ids, attention_mask and position_ids of left-padded rows; each row's positions
    continue from its `starts` entry (tokens already in a cache), from 0 without it."""
    import torch

    width = max(len(r) for r in rows)
    input_ids = torch.full((len(rows), width), pad, dtype=torch.long)
    attention = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        if row:
            input_ids[i, width - len(row) :] = torch.tensor(row, dtype=torch.long)
            attention[i, width - len(row) :] = 1
    # positions count real tokens only, so a padded row is scored as it would be alone
    positions = attention.cumsum(-1) - 1
    if starts is not None:
        positions = positions + torch.tensor(list(starts), dtype=torch.long)[:, None]
    return input_ids, attention, positions.clamp(min=0)


def generate_ids(
    model: Any, tokenizer: Any, prompts: Sequence[Sequence[int]], settings: GenerationSettings
) -> list[str]:
    """Generate one continuation per prompt (token ids), batched and with the KV cache."""
    import torch

    if not prompts:
        return []
    device = next(model.parameters()).device
    order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))
    out: list[str] = [""] * len(prompts)
    sampling: dict[str, Any] = {"do_sample": False}
    if settings.temperature > 0:
        sampling = {"do_sample": True, "temperature": settings.temperature, "top_p": settings.top_p}
    torch.manual_seed(settings.seed)
    with torch.no_grad():
        for first in range(0, len(order), settings.batch_size):
            rows = order[first : first + settings.batch_size]
            input_ids, attention, _ = left_pad([prompts[i] for i in rows], pad_id(tokenizer))
            generated = model.generate(
                input_ids=input_ids.to(device),
                attention_mask=attention.to(device),
                max_new_tokens=settings.max_new_tokens,
                pad_token_id=pad_id(tokenizer),
                eos_token_id=tokenizer.eos_token_id,
                use_cache=True,
                **sampling,
            )
            new = generated[:, input_ids.shape[1] :].cpu()
            for i, ids in zip(rows, new, strict=True):
                out[i] = clean_text(tokenizer.decode(ids, skip_special_tokens=True))
    return out


class Generator(Protocol):
    """Something that answers conversations: one model in-process, or a pool of processes."""

    def generate(
        self, conversations: Sequence[Conversation], settings: GenerationSettings
    ) -> list[str]: ...


class LocalGenerator:
    """A model and tokenizer in this process."""

    def __init__(self, model: Any, tokenizer: Any):
        self.model, self.tokenizer = model, tokenizer

    def generate(
        self, conversations: Sequence[Conversation], settings: GenerationSettings
    ) -> list[str]:
        ids = [encode_chat(self.tokenizer, c, settings.max_length) for c in conversations]
        return generate_ids(self.model, self.tokenizer, ids, settings)


# --- one process per GPU ------------------------------------------------------------------

_WORKER: LocalGenerator | None = None


def _init_worker(model_path: str, devices: Any) -> None:
    global _WORKER
    device = devices.get()  # each worker takes one device for its lifetime
    _WORKER = LocalGenerator(*load_model(model_path, device))


def _worker_generate(conversations: list[Conversation], settings: GenerationSettings) -> list[str]:
    assert _WORKER is not None, "worker not initialised"
    return _WORKER.generate(conversations, settings)


class ProcessPoolGenerator:
    """One worker process per device, each holding the model; conversations split among them."""

    def __init__(self, model_path: Path | str, devices: Sequence[str]):
        import multiprocessing

        ctx = multiprocessing.get_context("spawn")  # CUDA cannot be forked
        queue = ctx.Manager().Queue()
        for device in devices:
            queue.put(device)
        self.size = len(devices)
        self.pool = ProcessPoolExecutor(
            self.size, mp_context=ctx, initializer=_init_worker, initargs=(str(model_path), queue)
        )

    def generate(
        self, conversations: Sequence[Conversation], settings: GenerationSettings
    ) -> list[str]:
        shards = [list(conversations[k :: self.size]) for k in range(self.size)]
        futures = [
            self.pool.submit(_worker_generate, shard, replace(settings, seed=settings.seed + k))
            for k, shard in enumerate(shards)
            if shard
        ]
        out: list[str] = [""] * len(conversations)
        for k, future in enumerate(futures):
            out[k :: self.size] = future.result()
        return out

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


def generation_devices(num_processes: int | None) -> list[str]:
    """Devices for the generation processes: one per GPU by default, else this process only."""
    import torch

    gpus = torch.cuda.device_count()
    if num_processes is None:
        return [f"cuda:{i}" for i in range(gpus)] if gpus > 1 else []
    if num_processes <= 1:
        return []
    if gpus:
        return [f"cuda:{i % gpus}" for i in range(num_processes)]
    return ["cpu"] * num_processes


@contextlib.contextmanager
def open_generator(
    model_path: Path | str, num_processes: int | None = None, device: str = "auto"
) -> Iterator[Generator]:
    """A generator for `model_path`: in this process, or one process per device when several."""
    devices = generation_devices(num_processes)
    if not devices:
        yield LocalGenerator(*load_model(model_path, device))
        return
    pool = ProcessPoolGenerator(model_path, devices)
    try:
        yield pool
    finally:
        pool.close()
