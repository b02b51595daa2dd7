"""How a new data version differs from an earlier one: one distance per property, each with a
threshold (``quality.drift``).

Every measure is a distance between the two versions' empirical distributions, in [0, 1]:
Kolmogorov-Smirnov (largest gap between the two CDFs) for lengths and score margins, total
variation for categories (script, turns), the absolute difference for the share of pairs
where chosen is longer, and the Jensen-Shannon distance (base 2) between hashed word uni- and
bigram frequencies for content. They are descriptive, not tests: with a few hundred rows a
side, KS gaps of 0.1 arise by chance alone (its 95% band is about 1.36 * sqrt(2 / n)), so
small versions need loose thresholds; the report gives the row counts beside each value.
"""

from __future__ import annotations

import html
import io

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from alignment.data.quality.near_duplicates import shingle_hashes
from alignment.quality_config import DriftConfig

CONTENT_BUCKETS = 4096
# a row's script: the first of these its prompt and chosen text hold, else latin
SCRIPTS = {
    "cjk": r"[\x{3040}-\x{30FF}\x{4E00}-\x{9FFF}\x{AC00}-\x{D7AF}]",
    "cyrillic": r"[\x{0400}-\x{04FF}]",
    "arabic": r"[\x{0600}-\x{06FF}]",
    "devanagari": r"[\x{0900}-\x{097F}]",
    "greek": r"[\x{0370}-\x{03FF}]",
}
MEASURES = {
    "prompt_length": "KS distance between prompt lengths (characters)",
    "response_length": "KS distance between chosen and rejected lengths (characters)",
    "chosen_longer": "change in the share of pairs where chosen is the longer response",
    "score_margin": "KS distance between score_chosen - score_rejected (rows with both)",
    "script": "total variation distance between the script mixes (latin, cjk, cyrillic, ...)",
    "turns": "total variation distance between the numbers of prompt turns",
    "content": "Jensen-Shannon distance between hashed word uni- and bigram frequencies",
}


def _joined(column) -> pa.Array:
    lists = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    contents = pc.struct_field(lists.values, "content")
    return pc.binary_join(pa.ListArray.from_arrays(lists.offsets, contents), "\n")


def profile(table: pa.Table) -> dict:
    """The per-row properties the measures compare, from accepted rows."""
    prompt, chosen, rejected = (_joined(table.column(c)) for c in ("prompt", "chosen", "rejected"))
    lengths = {
        k: pc.utf8_length(v).to_numpy(zero_copy_only=False)
        for k, v in (("prompt", prompt), ("chosen", chosen), ("rejected", rejected))
    }
    scores = [
        table.column(c).to_numpy(zero_copy_only=False).astype("float64")
        for c in ("score_chosen", "score_rejected")
    ]
    margin = scores[0] - scores[1]
    text = pc.binary_join_element_wise(prompt, chosen, "\n")
    script = np.full(table.num_rows, "latin", dtype=object)
    for name, pattern in reversed(SCRIPTS.items()):  # the first listed wins
        hit = pc.fill_null(pc.match_substring_regex(text, pattern), False)
        script[hit.to_numpy(zero_copy_only=False)] = name
    content = np.zeros(CONTENT_BUCKETS, dtype=np.float64)
    for words in (1, 2):
        hashes, _ = shingle_hashes(text, words)
        content += np.bincount(hashes % np.uint64(CONTENT_BUCKETS), minlength=CONTENT_BUCKETS)
    unequal = lengths["chosen"] != lengths["rejected"]
    return {
        "rows": table.num_rows,
        "prompt_length": lengths["prompt"],
        "response_length": np.concatenate([lengths["chosen"], lengths["rejected"]]),
        "chosen_longer": (lengths["chosen"] > lengths["rejected"])[unequal],
        "score_margin": margin[np.isfinite(margin)],
        "script": script,
        "turns": pc.list_value_length(table.column("prompt")).to_numpy(zero_copy_only=False),
        "content": content,
    }


def ks_distance(a: np.ndarray, b: np.ndarray) -> float | None:
    """Largest gap between the two empirical CDFs (None when a side is empty)."""
    if not len(a) or not len(b):
        return None
    grid = np.union1d(a, b)
    cdf_a = np.searchsorted(np.sort(a), grid, side="right") / len(a)
    cdf_b = np.searchsorted(np.sort(b), grid, side="right") / len(b)
    return float(np.max(np.abs(cdf_a - cdf_b)))


def tv_distance(a: np.ndarray, b: np.ndarray) -> float | None:
    """Total variation distance between two samples of categories."""
    if not len(a) or not len(b):
        return None
    values_a, counts_a = np.unique(a.astype(str), return_counts=True)
    values_b, counts_b = np.unique(b.astype(str), return_counts=True)
    share_a = dict(zip(values_a.tolist(), (counts_a / len(a)).tolist(), strict=True))
    share_b = dict(zip(values_b.tolist(), (counts_b / len(b)).tolist(), strict=True))
    keys = set(share_a) | set(share_b)
    return 0.5 * sum(abs(share_a.get(k, 0.0) - share_b.get(k, 0.0)) for k in keys)


def js_distance(p: np.ndarray, q: np.ndarray) -> float | None:
    """Jensen-Shannon distance (base 2, in [0, 1]) between two count vectors."""
    if p.sum() == 0 or q.sum() == 0:
        return None
    p, q = p / p.sum(), q / q.sum()
    m = (p + q) / 2

    def kl(x: np.ndarray) -> float:
        nz = x > 0
        return float(np.sum(x[nz] * np.log2(x[nz] / m[nz])))

    return float(np.sqrt(max(0.0, (kl(p) + kl(q)) / 2)))


def measure(before: dict, after: dict) -> dict[str, float | None]:
    """Every measure between two profiles."""
    shares = [
        p["chosen_longer"].mean() if len(p["chosen_longer"]) else None for p in (before, after)
    ]
    return {
        "prompt_length": ks_distance(before["prompt_length"], after["prompt_length"]),
        "response_length": ks_distance(before["response_length"], after["response_length"]),
        "chosen_longer": None if None in shares else abs(float(shares[0] - shares[1])),
        "score_margin": ks_distance(before["score_margin"], after["score_margin"]),
        "script": tv_distance(before["script"], after["script"]),
        "turns": tv_distance(before["turns"], after["turns"]),
        "content": js_distance(before["content"], after["content"]),
    }


def drift_between(before: pa.Table, after: pa.Table, cfg: DriftConfig) -> dict:
    """Each measure with its threshold and whether the new version is past it."""
    values = measure(profile(before), profile(after))
    thresholds = cfg.thresholds.model_dump()
    measures = {}
    for name, value in values.items():
        limit = thresholds.get(name)
        over = value is not None and limit is not None and value > limit
        measures[name] = {
            "value": None if value is None else round(value, 4),
            "threshold": limit,
            "exceeded": over,
            "what": MEASURES[name],
        }
    return {
        "rows": [before.num_rows, after.num_rows],
        "measures": measures,
        "exceeded": [name for name, m in measures.items() if m["exceeded"]],
        "on_exceed": cfg.on_exceed,
    }


def compare_versions(ws, dataset: str, v1: str, v2: str, cfg: DriftConfig) -> dict:
    """``drift_between`` the accepted rows of two recorded versions (ids, prefixes or tags)."""
    from alignment.data.version import find_version, read_version_file
    from alignment.errors import VersioningError

    tables = []
    for ref in (v1, v2):
        version = find_version(ws, dataset, ref)
        if version is None:
            raise VersioningError(f"dataset {dataset!r} has no version {ref!r}")
        tables.append(pq.read_table(io.BytesIO(read_version_file(ws, version, "accepted.parquet"))))
    return {"v1": v1, "v2": v2, **drift_between(tables[0], tables[1], cfg)}


def summary_lines(drift: dict) -> list[str]:
    """One line per measure: value, threshold, and a mark when past it."""
    lines = [f"drift ({drift['rows'][0]} -> {drift['rows'][1]} rows)   value  threshold"]
    for name, m in drift["measures"].items():
        value = "n/a" if m["value"] is None else f"{m['value']:.3f}"
        limit = "-" if m["threshold"] is None else f"{m['threshold']:.3f}"
        mark = "  EXCEEDED" if m["exceeded"] else ""
        lines.append(f"  {name:24s} {value:>7s} {limit:>9s}{mark}")
    return lines


def markdown(drift: dict) -> str:
    """The measures as a Markdown table (a Prefect artifact)."""
    rows = [
        f"| {name} | {m['value']} | {m['threshold']} | {'**yes**' if m['exceeded'] else 'no'} |"
        for name, m in drift["measures"].items()
    ]
    head = f"Drift from `{drift['v1']}` to `{drift['v2']}` ({drift['rows'][0]} -> {drift['rows'][1]} rows)"
    table = "| measure | value | threshold | exceeded |\n|---|---|---|---|\n" + "\n".join(rows)
    return f"{head}\n\n{table}\n"


def html_report(drift: dict) -> str:
    """A one-page HTML report of the measures."""
    rows = "".join(
        f"<tr><td>{html.escape(name)}</td><td>{m['value']}</td><td>{m['threshold']}</td>"
        f"<td>{'EXCEEDED' if m['exceeded'] else 'ok'}</td><td>{html.escape(m['what'])}</td></tr>"
        for name, m in drift["measures"].items()
    )
    title = f"Data drift {html.escape(str(drift['v1']))} &rarr; {html.escape(str(drift['v2']))}"
    return (
        f"<html><head><meta charset='utf-8'><title>{title}</title></head><body><h1>{title}</h1>"
        f"<p>{drift['rows'][0]} rows before, {drift['rows'][1]} after; past a threshold: "
        f"{html.escape(', '.join(drift['exceeded']) or 'none')} (on_exceed: {drift['on_exceed']})"
        "</p><table border='1'><tr><th>measure</th><th>value</th><th>threshold</th>"
        f"<th>status</th><th>what</th></tr>{rows}</table></body></html>"
    )
