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
    a context joins the group before it when that forwards no more tokens than starting a new
    one (a group of g sharing s tokens saves (g - 1) * s), up to `max_group` members.
    """
    if not ids or any(not row for row in ids):
        raise ValueError("every context needs at least one token")
    order = sorted(range(len(ids)), key=lambda i: ids[i])
    # the common head of sorted lists is that of the first and the last; keep a token per tail
    head = min(common_prefix(ids[order[0]], ids[order[-1]]), min(len(r) for r in ids) - 1)
    groups: list[tuple[int, list[int]]] = []
    shared, members = 0, []
    for i in order:
        own = len(ids[i]) - 1 - head  # the most a context can share and keep a tail
        if members:
            joined = min(shared, own, common_prefix(ids[members[-1]], ids[i]) - head)
            if len(members) < max_group and len(members) * joined >= (len(members) - 1) * shared:
                shared = joined
                members.append(i)
                continue
            groups.append((shared, members))
        shared, members = own, [i]
    groups.append((shared, members))
    return PrefixPlan(head, groups)


def _left_pad_after(rows: Sequence[Sequence[int]], pad: int, starts: Sequence[int]):
    """ids, mask and positions of left-padded rows whose positions continue from `starts`."""
    import torch

    width = max(len(r) for r in rows)
    input_ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        if row:
            input_ids[i, width - len(row) :] = torch.tensor(row, dtype=torch.long)
            mask[i, width - len(row) :] = 1
    start = torch.tensor(list(starts), dtype=torch.long)[:, None]
    positions = (start + mask.cumsum(-1) - 1).clamp(min=0)
    return input_ids, mask, positions


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
    `options` the (A, B) token ids of each. Groups are forwarded `batch_size` at a time, their
    tails at most ``2 * batch_size`` rows at a time, longest first to limit padding.
    """
    import torch

    plan = plan or plan_prefixes(ids)
    if plan.head < 1:
        raise ValueError("the contexts share no first token; there is no head to cache")
    device = next(model.parameters()).device
    head = torch.tensor([list(ids[0][: plan.head])], device=device)
    out = [0.0] * len(ids)
    with torch.inference_mode():
        head_cache = model(input_ids=head, use_cache=True).cache
        head_layers = _layers(head_cache)
        groups = sorted(
            plan.groups, key=lambda g: -(g[0] + max(len(ids[i]) for i in g[1]) - plan.head)
        )
        start = 0
        while start < len(groups):
            stop, rows = start, 0
            while stop < len(groups) and stop - start < batch_size and (
                rows + len(groups[stop][1]) <= 2 * batch_size or stop == start
            ):
                rows += len(groups[stop][1])
                stop += 1
            batch = groups[start:stop]
            start = stop
            # the groups' shared parts, on the head's cache expanded over the batch
            shared_rows = [list(ids[members[0]][plan.head : plan.head + s]) for s, members in batch]
            n = len(batch)
            head_mask = torch.ones((n, plan.head), dtype=torch.long)
            layers = [(k.expand(n, -1, -1, -1), v.expand(n, -1, -1, -1)) for k, v in head_layers]
            if max(len(r) for r in shared_rows):
                input_ids, mask, positions = _left_pad_after(shared_rows, pad, [plan.head] * n)
                shared_mask = torch.cat([head_mask, mask], dim=1)
                layers = _layers(
                    model(
                        input_ids=input_ids.to(device),
                        attention_mask=shared_mask.to(device),
                        position_ids=positions.to(device),
                        cache=_cache(model, layers),
                        use_cache=True,
                        logits_to_keep=1,
                    ).cache
                )
            else:
                shared_mask = head_mask
            # every member's tail, on its group's cache rows
            owner = [g for g, (_, members) in enumerate(batch) for _ in members]
            members = [i for _, m in batch for i in m]
            tails = [list(ids[i][plan.head + batch[g][0] :]) for g, i in zip(owner, members)]
            starts = [plan.head + batch[g][0] for g in owner]
            input_ids, mask, positions = _left_pad_after(tails, pad, starts)
            index = torch.tensor(owner, device=device)
            tail_mask = torch.cat([shared_mask[owner], mask], dim=1)
            logits = model(
                input_ids=input_ids.to(device),
                attention_mask=tail_mask.to(device),
                position_ids=positions.to(device),
                cache=_cache(model, [(k[index], v[index]) for k, v in layers]),
                use_cache=False,
                logits_to_keep=1,
            ).logits[:, -1, :]
            chosen = torch.tensor([options[i] for i in members], device=logits.device)
            pair = logits.gather(1, chosen).float()
            for i, p in zip(members, torch.sigmoid(pair[:, 0] - pair[:, 1]).tolist(), strict=True):
                out[i] = p
    return out
