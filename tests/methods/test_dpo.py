"""The platform's DPO trainer: same loss as stock TRL on the same batch, and the reference cache."""

from __future__ import annotations

from pathlib import Path

import pytest

from alignment.train import refcache


def _rows(n: int = 12) -> list[dict]:
    return [
        {
            "id": f"r{i}",
            "prompt": [{"role": "user", "content": f"What is {i % 7} plus {i % 5}?"}],
            "chosen": [
                {"role": "assistant", "content": f"{i % 7} plus {i % 5} is {i % 7 + i % 5}."}
            ],
            "rejected": [{"role": "assistant", "content": "I refuse to answer."}],
        }
        for i in range(n)
    ]


@pytest.fixture(scope="module")
def pairs(tmp_path_factory) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path_factory.mktemp("dpo-pairs") / "train.parquet"
    pq.write_table(pa.Table.from_pylist(_rows()), path)
    return path


def _args(tmp_path: Path, **kw):
    from trl import DPOConfig

    return DPOConfig(
        output_dir=str(tmp_path / "out"),
        per_device_train_batch_size=4,
        max_length=64,
        report_to="none",
        use_cpu=True,
        bf16=False,
        disable_tqdm=True,
        model_init_kwargs={"dtype": "float32"},
        **kw,
    )


def _trainer(model_dir: Path, pairs: Path, args, platform: bool, **kw):
    from datasets import Dataset
    from transformers import AutoTokenizer
    from trl import DPOTrainer

    from alignment.methods.dpo import trainer_class

    dataset = Dataset.from_parquet(str(pairs))
    if not platform:
        dataset = dataset.remove_columns("id")
    cls = trainer_class() if platform else DPOTrainer
    return cls(
        model=str(model_dir),
        args=args,
        train_dataset=dataset,
        processing_class=AutoTokenizer.from_pretrained(model_dir),
        **kw,
    )


def _perturb(model) -> None:
    """Move the policy off the reference the same way in every trainer (else DPO's loss is log 2)."""
    import torch

    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for _, param in sorted(model.named_parameters()):
            param.add_(0.05 * torch.randn(param.shape, generator=generator))


def _batch(trainer, rows=range(4)):
    return trainer.data_collator([trainer.train_dataset[i] for i in rows])


@pytest.fixture(scope="module")
def stock_and_platform(tiny_model_dir, pairs, tmp_path_factory):
    """Stock TRL (reference model loaded, chunked kernel) and ours (full log-softmax, cache)."""
    tmp = tmp_path_factory.mktemp("dpo-trainers")
    stock = _trainer(tiny_model_dir, pairs, _args(tmp / "stock"), platform=False)
    cache = {"train": tmp / "cache" / "ref.parquet"}
    ours = _trainer(
        tiny_model_dir,
        pairs,
        _args(tmp / "ours", precompute_ref_log_probs=True),
        platform=True,
        full_vocab_logprobs=True,
        reference_cache=cache,
    )
    for trainer in (stock, ours):
        _perturb(trainer.model)
    return stock, ours, cache


@pytest.mark.parametrize(
    ("loss_type", "label_smoothing"),
    [("sigmoid", 0.0), ("ipo", 0.0), ("hinge", 0.0), ("robust", 0.1)],
)
def test_loss_and_gradient_equal_stock_trl_on_the_same_batch(
    stock_and_platform, loss_type, label_smoothing
):
    import torch

    stock, ours, _ = stock_and_platform
    assert ours.ref_model is None  # reference log-probs come from the cache, not a model
    results = []
    for trainer in (stock, ours):
        trainer.loss_types, trainer.label_smoothing = [loss_type], label_smoothing
        trainer.model.train()  # metrics are logged under 'train' (dropout is off in both)
        trainer.model.zero_grad()
        loss = trainer.compute_loss(trainer.model, _batch(trainer))
        loss.backward()
        grad = trainer.model.get_output_embeddings().weight.grad.clone()
        metrics = {k: v[-1] for k, v in trainer._metrics["train"].items()}
        results.append((loss.item(), grad, metrics))
    (stock_loss, stock_grad, stock_m), (our_loss, our_grad, our_m) = results
    assert abs(stock_loss - 0.6931) > 1e-3  # a real comparison, not log 2 on both sides
    assert our_loss == pytest.approx(stock_loss, abs=1e-5)
    torch.testing.assert_close(our_grad, stock_grad, atol=1e-5, rtol=1e-4)
    for key in ("entropy", "logits/chosen", "mean_token_accuracy", "rewards/margins"):
        assert our_m[key] == pytest.approx(stock_m[key], abs=1e-4), key


def test_a_step_is_one_forward_over_both_answers_and_the_head_sees_only_their_tokens(
    stock_and_platform,
):
    """No reference forward, no separate chosen and rejected passes, no padding or prompt
    positions through the vocabulary projection: the work the floor does, counted."""
    _, ours, _ = stock_and_platform
    ours.loss_types, ours.label_smoothing = ["sigmoid"], 0.0
    ours.model.train()
    calls: dict[str, list] = {"backbone": [], "head": []}
    hooks = [
        ours.model.base_model.register_forward_hook(
            lambda m, args, kwargs, out: calls["backbone"].append(kwargs["input_ids"].shape),
            with_kwargs=True,
        ),
        ours.model.get_output_embeddings().register_forward_hook(
            lambda m, args, out: calls["head"].append(args[0].shape)
        ),
    ]
    try:
        batch = _batch(ours)
        ours.compute_loss(ours.model, batch).backward()
    finally:
        for hook in hooks:
            hook.remove()
    scored = int(batch["completion_mask"][:, 1:].sum())
    assert calls["backbone"] == [batch["input_ids"].shape]  # 4 chosen + 4 rejected rows, once
    assert batch["input_ids"].shape[0] == 8
    assert calls["head"] == [(scored, ours.model.config.hidden_size)]


def test_soft_labels_are_conservative_dpo_with_each_pairs_own_smoothing(stock_and_platform):
    import math

    import torch

    stock, ours, _ = stock_and_platform
    for trainer in (stock, ours):
        trainer.loss_types, trainer.label_smoothing = ["sigmoid"], 0.0
        trainer.model.train()
    # each pair's beta * margin, read from stock TRL one pair at a time
    margins = []
    for row in range(4):
        stock.compute_loss(stock.model, _batch(stock, [row]))
        margins.append(stock._metrics["train"]["rewards/margins"][-1])
    assert max(abs(m) for m in margins) > 1e-2

    def loss_and_grad(trainer, batch):
        trainer.model.zero_grad()
        loss = trainer.compute_loss(trainer.model, batch)
        loss.backward()
        return loss.item(), trainer.model.get_output_embeddings().weight.grad.clone()

    # p = 1 everywhere: the ordinary DPO loss and gradient
    hard = {**_batch(ours), "preference": torch.ones(4)}
    stock_loss, stock_grad = loss_and_grad(stock, _batch(stock))
    our_loss, our_grad = loss_and_grad(ours, hard)
    assert our_loss == pytest.approx(stock_loss, abs=1e-5)
    torch.testing.assert_close(our_grad, stock_grad, atol=1e-5, rtol=1e-4)

    p = [0.9, 0.5, 0.7, 1.0]
    soft = {**_batch(ours), "preference": torch.tensor(p)}
    expected = sum(
        -(q * math.log(1 / (1 + math.exp(-x))) + (1 - q) * math.log(1 / (1 + math.exp(x))))
        for q, x in zip(p, margins, strict=True)
    ) / len(p)
    assert ours.compute_loss(ours.model, soft).item() == pytest.approx(expected, abs=1e-5)


def test_second_run_reuses_the_cache_without_any_reference_forward(
    stock_and_platform, tiny_model_dir, pairs, tmp_path, monkeypatch
):
    from alignment.methods.dpo import trainer_class

    _, first, cache = stock_and_platform
    assert first.reference_cache_events == [("train", "miss")]
    assert cache["train"].is_file()

    cls = trainer_class()
    calls = []
    monkeypatch.setattr(
        cls, "compute_ref_log_probs", lambda self, *a: calls.append(1) or pytest.fail("scored")
    )
    second = _trainer(
        tiny_model_dir,
        pairs,
        _args(tmp_path, precompute_ref_log_probs=True),
        platform=True,
        full_vocab_logprobs=True,
        reference_cache=cache,
    )
    assert second.reference_cache_events == [("train", "hit")]
    assert calls == [] and second.ref_model is None
    _perturb(second.model)
    for trainer in (first, second):
        trainer.loss_types, trainer.label_smoothing = ["sigmoid"], 0.0
    batch_first, batch_second = _batch(first, range(4, 8)), _batch(second, range(4, 8))
    assert batch_second["ref_chosen_logps"].tolist() == batch_first["ref_chosen_logps"].tolist()
    assert (
        second.compute_loss(second.model, batch_second).item()
        == first.compute_loss(first.model, batch_first).item()
    )


def test_cache_key_changes_with_each_input(tiny_model_dir, pairs, tmp_path):
    import shutil

    base = refcache.reference_key(tiny_model_dir, pairs, 64)
    assert base == refcache.reference_key(tiny_model_dir, pairs, 64)
    assert base != refcache.reference_key(tiny_model_dir, pairs, 128)
    other = tmp_path / "other.parquet"
    other.write_bytes(pairs.read_bytes() + b"\0")
    assert base != refcache.reference_key(tiny_model_dir, other, 64)
    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    assert base == refcache.reference_key(model, pairs, 64)  # content, not path
    template = model / "chat_template.jinja"
    if template.is_file():
        template.write_text(template.read_text() + " ")
        assert base != refcache.reference_key(model, pairs, 64)
    assert (
        refcache.cache_path(tmp_path, base) == tmp_path / "cache" / "ref-logps" / f"{base}.parquet"
    )


def test_cache_load_is_a_miss_when_an_id_is_missing(tmp_path):
    path = refcache.save(tmp_path / "c.parquet", ["a", "b"], [-1.0, -2.0], [-3.0, -4.0])
    assert refcache.load(path, ["b", "a"]) == ([-2.0, -1.0], [-4.0, -3.0])
    assert refcache.load(path, ["a", "c"]) is None
    assert refcache.load(tmp_path / "none.parquet", ["a"]) is None


def test_full_vocab_is_the_cpu_default_and_chunked_the_gpu_default():
    from alignment.methods.dpo import use_full_vocab_logprobs

    assert use_full_vocab_logprobs("auto", "cpu") and not use_full_vocab_logprobs("auto", "cuda")
    assert use_full_vocab_logprobs("full", "cuda") and not use_full_vocab_logprobs("chunked", "cpu")


def test_label_smoothing_without_robust_is_a_config_error():
    from pydantic import ValidationError

    from alignment.config import DPOConfig

    assert DPOConfig(loss_type="robust", label_smoothing=0.1).label_smoothing == 0.1
    with pytest.raises(ValidationError, match="only used by loss_type 'robust'"):
        DPOConfig(loss_type="sigmoid", label_smoothing=0.1)
