"""Shared-prefix forward passes for the one-pass judge: the same logits, fewer tokens forwarded.

The judge's contexts share most of their tokens: every context starts with the chat template's
head (and any few-shot turns), and the two orders of a pair share everything up to the options.
A causal model's keys and values at a position depend only on the tokens up to it, so a prefix
that several contexts share can be forwarded once and its KV cache reused:

1. the **head**, the longest token prefix common to every context, is forwarded once (batch 1);
2. each **group** of contexts (in practice the two orders of a pair) forwards its own shared part
   once, batched, on top of the head's cache expanded over the batch;
3. each context forwards its **tail** on top of its group's cache rows, and the logits are read
   at its last token only.

The split is made on the token ids of the whole contexts (the longest common id prefix), never
by tokenizing pieces, so the ids are exactly those the plain path forwards. Rows of different
lengths are padded inside the sequence ([head | shared | tail], each part left-padded), which an
explicit 2D attention mask hides, and position ids count real tokens only, so each row is scored
as it would be alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from alignment.cai.generate import left_pad


@dataclass
class PrefixPlan:
    """How contexts are split: the common head's length, and groups sharing a further part.

    ``groups`` holds ``(shared, members)``: `shared` tokens after the head common to every
    member (context indices); each member's tail is the rest of its ids (at least one token).
    """

    head: int
    groups: list[tuple[int, list[int]]]

    def tokens_forwarded(self, lengths: Sequence[int]) -> int:
        """Real tokens the plan forwards (no padding): head once, each shared part, each tail."""
        return self.head + sum(
            shared + sum(lengths[i] - self.head - shared for i in members)
            for shared, members in self.groups
        )


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    """Length of the longest common prefix of two id lists."""
    n = min(len(a), len(b))
    k = 0
    while k < n and a[k] == b[k]:
        k += 1
    return k


def plan_prefixes(ids: Sequence[Sequence[int]], max_group: int = 4) -> PrefixPlan:
    """Split non-empty contexts into a common head, groups and tails, fewest tokens greedily.

    The contexts are sorted by their ids, so contexts with long common prefixes are neighbours;
    a context joins the group before it when it shares some tokens with it, no fewer than with
    the context after it, and the group forwards no more tokens for it (a group of g sharing s
    tokens saves (g - 1) * s), up to `max_group` members.
    """
    if not ids or any(not row for row in ids):
        raise ValueError("every context needs at least one token")
    order = sorted(range(len(ids)), key=lambda i: ids[i])
    # the common head of sorted lists is that of the first and the last; keep a token per tail
    head = min(common_prefix(ids[order[0]], ids[order[-1]]), min(len(r) for r in ids) - 1)
    groups: list[tuple[int, list[int]]] = []
    shared, members = 0, []
    for j, i in enumerate(order):
        own = len(ids[i]) - 1 - head  # the most a context can share and keep a tail
        if members:
            joined = min(shared, own, common_prefix(ids[members[-1]], ids[i]) - head)
            after = common_prefix(ids[i], ids[order[j + 1]]) - head if j + 1 < len(order) else 0
            if (
                len(members) < max_group
                and joined > 0
                and joined >= min(after, own)  # not more with the next one
                and len(members) * joined >= (len(members) - 1) * shared
            ):
                shared = joined
                members.append(i)
                continue
            groups.append((shared, members))
        shared, members = own, [i]
    groups.append((shared, members))
    return PrefixPlan(head, groups)


def _cache(model: Any, layers: Sequence[tuple[Any, Any]]) -> Any:
    from transformers import DynamicCache

    return DynamicCache(ddp_cache_data=layers, config=model.config)


def _layers(cache: Any) -> list[tuple[Any, Any]]:
    return [(layer.keys, layer.values) for layer in cache.layers]


def supports_shared_prefix(model: Any) -> bool:
    """Whether the model's cache can be reused the way this module does: a decoder-only model
    whose every layer attends to all earlier positions (no sliding window, no linear attention),
    where padding inside a row is hidden by the 2D attention mask."""
    from transformers.cache_utils import DynamicLayer

    config = getattr(model, "config", None)
    if config is None or getattr(config, "is_encoder_decoder", False):
        return False
    try:
        layers = _cache(model, []).layers
    except Exception:  # a model whose cache this transformers cannot build from its config
        return False
    return bool(layers) and all(type(layer) is DynamicLayer for layer in layers)


@dataclass
class PrefixBatch:
    """The tensors of one step: some groups' shared parts, then all their members' tails."""

    shared_ids: Any  # [groups, S] left-padded, or None when no group shares a further token
    shared_mask: Any  # [groups, head + S]: 1 on real tokens
    shared_positions: Any
    owner: Any  # [rows]: the group of each tail row
    tail_ids: Any  # [rows, T] left-padded: the last position is real
    tail_mask: Any  # [rows, head + S + T]
    tail_positions: Any
    options: Any  # [rows, 2]: the (A, B) token ids
    members: list[int]  # the context of each tail row


def prefix_batches(
    ids: Sequence[Sequence[int]],
    options: Sequence[tuple[int, int]],
    pad: int,
    batch_size: int,
    plan: PrefixPlan,
) -> list[PrefixBatch]:
    """The steps that read every context: `batch_size` groups a step (their tails at most
    ``2 * batch_size`` rows, unless one group alone has more), longest first to limit padding."""
    import torch

    groups = sorted(plan.groups, key=lambda g: -(g[0] + max(len(ids[i]) for i in g[1]) - plan.head))
    out, start = [], 0
    while start < len(groups):
        stop, rows = start, 0
        while (
            stop < len(groups)
            and stop - start < batch_size
            and (rows + len(groups[stop][1]) <= 2 * batch_size or stop == start)
        ):
            rows += len(groups[stop][1])
            stop += 1
        batch, start = groups[start:stop], stop
        n = len(batch)
        shared_rows = [list(ids[members[0]][plan.head : plan.head + s]) for s, members in batch]
        head_mask = torch.ones((n, plan.head), dtype=torch.long)
        shared_ids = shared_positions = None
        shared_mask = head_mask
        if max(len(r) for r in shared_rows):
            shared_ids, mask, shared_positions = left_pad(shared_rows, pad, [plan.head] * n)
            shared_mask = torch.cat([head_mask, mask], dim=1)
        owner = [g for g, (_, members) in enumerate(batch) for _ in members]
        members = [i for _, group in batch for i in group]
        tails = [
            list(ids[i][plan.head + batch[g][0] :]) for g, i in zip(owner, members, strict=True)
        ]
        tail_ids, mask, tail_positions = left_pad(
            tails, pad, [plan.head + batch[g][0] for g in owner]
        )
        out.append(
            PrefixBatch(
                shared_ids,
                shared_mask,
                shared_positions,
                torch.tensor(owner),
                tail_ids,
                torch.cat([shared_mask[owner], mask], dim=1),
                tail_positions,
                torch.tensor([list(options[i]) for i in members]),
                members,
            )
        )
    return out


def forward_head(model: Any, head: Sequence[int]) -> list[tuple[Any, Any]]:
    """Keys and values of every layer after the common head (batch 1)."""
    import torch

    device = next(model.parameters()).device
    with torch.inference_mode():
        cache = model(input_ids=torch.tensor([list(head)], device=device), use_cache=True).cache
    return _layers(cache)


def forward_batch(model: Any, head: Sequence[tuple[Any, Any]], batch: PrefixBatch) -> Any:
    """sigmoid(logit_A - logit_B) at the last token of each tail row of `batch` (a tensor)."""
    import torch

    device = next(model.parameters()).device
    n = batch.shared_mask.shape[0]
    with torch.inference_mode():
        layers = [(k.expand(n, -1, -1, -1), v.expand(n, -1, -1, -1)) for k, v in head]
        if batch.shared_ids is not None:  # the groups' shared parts, on the head's cache
            shared = model(
                input_ids=batch.shared_ids.to(device),
                attention_mask=batch.shared_mask.to(device),
                position_ids=batch.shared_positions.to(device),
                cache=_cache(model, layers),
                use_cache=True,
                logits_to_keep=1,
            )
            layers = _layers(shared.cache)
        index = batch.owner.to(device)  # every tail on its group's cache rows
        logits = model(
            input_ids=batch.tail_ids.to(device),
            attention_mask=batch.tail_mask.to(device),
            position_ids=batch.tail_positions.to(device),
            cache=_cache(model, [(k[index], v[index]) for k, v in layers]),
            use_cache=False,
            logits_to_keep=1,
        ).logits[:, -1, :]
        pair = logits.gather(1, batch.options.to(logits.device)).float()
        return torch.sigmoid(pair[:, 0] - pair[:, 1])


def shared_prefix_logits(
    model: Any,
    ids: Sequence[Sequence[int]],
    options: Sequence[tuple[int, int]],
    pad: int,
    batch_size: int = 8,
    plan: PrefixPlan | None = None,
) -> list[float]:
    """sigmoid(logit_A - logit_B) at the last token of each context, by shared-prefix passes.

    `ids` are the contexts' token ids (each at least two tokens, with a common first token),
    `options` the (A, B) token ids of each.
    """
    plan = plan or plan_prefixes(ids)
    if plan.head < 1:
        raise ValueError("the contexts share no first token; there is no head to cache")
    head = forward_head(model, ids[0][: plan.head])
    out = [0.0] * len(ids)
    for batch in prefix_batches(ids, options, pad, batch_size, plan):
        for i, p in zip(batch.members, forward_batch(model, head, batch).tolist(), strict=True):
            out[i] = p
    return out
