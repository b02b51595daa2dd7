"""Benchmark: near-duplicate detection in the ingest, against the least work giving the same groups.

    python benchmarks/near_duplicates.py [--rows 1000000] [--rounds 3]
    python benchmarks/near_duplicates.py --smoke          # a tiny run: every path, no figures

The input is ``preference_pairs.generate`` (the mix ``validate.py`` describes: 0.5% of rows
repeat an earlier prompt with changed case, spacing or punctuation). Variants, each in its own
child process (its peak memory with any worker processes it starts), interleaved round by
round, medians reported:

- ``ingest``: the whole ingest with the near-duplicate check off (the baseline);
- ``ingest_near_duplicates``: the same with it on (MinHash over prompts and pairs, LSH, flag
  policy); the target is on this one: 1M pairs in < 90 s within 4 GB;
- ``floor``: the least work that gives the same groups, on strings extracted beforehand (the
  prompt text and pair text of the rows that pass the row rules, which are what the check sees):
  the same shingles and ``rensa`` signatures, the same LSH bands, each unit compared with the
  first earlier unit of each of its bands, as the check does, all as whole-array operations; no
  Arrow tables, ids, reports or split bookkeeping.

The run fails unless the floor flags exactly the rows the ingest flags, by kind. Prints a table,
writes benchmarks/results/near_duplicates.json and prints that JSON as the last line.
``near_duplicate_seconds`` is ingest_near_duplicates minus ingest: the check's own cost;
``ratio_vs_floor`` is that cost over the floor's seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from memory import TreePeak
from preference_pairs import MAX_CHARS, NEAR_DUPLICATE_AT, generate

ROOT = Path(__file__).resolve().parents[1]
TARGET = {"seconds_1m": 90.0, "peak_mb": 4096.0, "ratio_vs_floor": 3.0}
VARIANTS = ("ingest", "ingest_near_duplicates", "floor")


def run_ingest(src: Path, out: Path, near_duplicates: bool) -> dict:
    from alignment.config import IngestConfig, SplitConfig, ValidationConfig
    from alignment.data.ingest import ingest_file
    from alignment.quality_config import NearDuplicateConfig, QualityConfig

    nd = NearDuplicateConfig(enabled=near_duplicates, report_groups=1 << 40)
    cfg = ValidationConfig(max_rejected_fraction=0.5, max_length_bias=1.0, max_chars=MAX_CHARS)
    started = time.perf_counter()
    result = ingest_file(
        src, out, IngestConfig(), cfg, SplitConfig(), QualityConfig(near_duplicates=nd)
    )
    seconds = time.perf_counter() - started
    flagged = {"prompt": 0, "pair": 0}
    for group in result.report.get("near_duplicates", {}).get("groups", []):
        flagged[group["kind"]] += len(group["members"])
    return {"seconds": seconds, "accepted": result.accepted, "flagged": flagged}


def extract(accepted: Path, dest: Path, validate_rows: int) -> None:
    """The floor's input, made before any timing: what the check reads of each clean row."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from alignment.data.formats import messages_json, sha256_digests
    from alignment.data.quality.near_duplicates import _joined

    table = pq.read_table(accepted)
    prompt = _joined(table.column("prompt"))
    pair = pc.binary_join_element_wise(
        prompt, _joined(table.column("chosen")), _joined(table.column("rejected")), "\n"
    )
    digests = sha256_digests(messages_json(table.column("prompt")))
    exact = np.ascontiguousarray(digests[:, :8]).view(">u8").ravel().astype(np.uint64)
    batch = table.column("row").to_numpy() // validate_rows  # one check call per group
    out = pa.table({"prompt": prompt, "pair": pair, "exact": exact, "batch": batch})
    pq.write_table(out, dest)


def _matched(sig, bands, has_text, batch, threshold: float):
    """Units that repeat an earlier one: per band, the first earlier unit with that band value
    overall and the first in the unit's own batch (the check's index and its local map), the
    8-bit similarity corrected for chance, at or over the threshold."""
    import numpy as np

    sig8 = (sig & 0xFF).astype(np.uint8)
    found = np.zeros(len(sig), dtype=bool)
    live = np.flatnonzero(has_text)  # units without a shingle are neither indexed nor matched
    for b in range(bands.shape[1]):
        values = bands[live, b]
        order = np.lexsort((live, values))
        v, p, t = values[order], live[order], batch[live][order]
        start = np.ones(len(v), dtype=bool)
        start[1:] = v[1:] != v[:-1]
        first_all = p[np.maximum.accumulate(np.where(start, np.arange(len(v)), 0))]
        start_batch = start.copy()
        start_batch[1:] |= t[1:] != t[:-1]
        first_batch = p[np.maximum.accumulate(np.where(start_batch, np.arange(len(v)), 0))]
        # the overall first counts only from an earlier batch or earlier in this one
        for cand in (first_all, first_batch):
            ask = (cand != p) & ~found[p]
            if not ask.any():
                continue
            i, j = p[ask], cand[ask]
            for lo in range(0, len(i), 1 << 16):  # bounded memory
                a, c = i[lo : lo + (1 << 16)], j[lo : lo + (1 << 16)]
                same = (sig8[a] == sig8[c]).mean(axis=1)
                sim = np.maximum(0.0, (same - 1 / 256) / (1 - 1 / 256))
                found[a[sim >= threshold]] = True
    return found


def run_floor(strings: Path) -> dict:
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from alignment.data.quality.near_duplicates import _Index, lsh_bands, signatures
    from alignment.quality_config import NearDuplicateConfig

    cfg = NearDuplicateConfig()
    started = time.perf_counter()
    table = pq.read_table(strings)
    exact, batch = table.column("exact").to_numpy(), table.column("batch").to_numpy()
    # each exact prompt once, at its first row, in input order
    _, first, inverse = np.unique(exact, return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")
    at = first[order]
    flags = {}
    for kind, text, unit_batch in (
        ("prompt", table.column("prompt").take(pa.array(at)), batch[at]),
        ("pair", table.column("pair"), batch),
    ):
        threshold = cfg.prompt_threshold if kind == "prompt" else cfg.pair_threshold
        index = _Index(threshold, *lsh_bands(cfg.num_perm, threshold))
        sig, has_text = signatures(text.combine_chunks(), cfg)
        flags[kind] = _matched(sig, index.band_hashes(sig), has_text, unit_batch, threshold)
    # a row is flagged by its prompt when its prompt repeats an earlier one, else by its pair
    prompt_of_row = np.empty(len(first), dtype=np.int64)
    prompt_of_row[order] = np.arange(len(first))
    by_prompt = flags["prompt"][prompt_of_row[inverse]]
    by_pair = flags["pair"] & ~by_prompt
    seconds = time.perf_counter() - started
    return {
        "seconds": seconds,
        "accepted": len(exact),
        "flagged": {"prompt": int(by_prompt.sum()), "pair": int(by_pair.sum())},
    }


def child(variant: str, src: str, out: str) -> None:
    with TreePeak() as memory:  # the check's worker processes count too
        if variant == "floor":
            result = run_floor(Path(src))
        else:
            result = run_ingest(Path(src), Path(out), variant == "ingest_near_duplicates")
    result["peak_rss_mb"] = memory.peak_mb
    print("RESULT " + json.dumps(result))


def measure(variant: str, src: Path, out: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "GX_ANALYTICS_ENABLED": "false"}
    proc = subprocess.run(
        [sys.executable, __file__, "--child", variant, str(src), str(out)],
        capture_output=True,
        text=True,
        env=env,
    )
    lines = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        raise SystemExit(f"{variant} failed:\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1][7:])


def _summary(runs: list[dict], rows: int) -> dict:
    seconds = statistics.median(r["seconds"] for r in runs)
    return {
        "seconds": round(seconds, 3),
        "rounds": [round(r["seconds"], 3) for r in runs],
        "rows_per_s": round(rows / seconds) if seconds else None,
        "peak_rss_mb": round(max(r["peak_rss_mb"] for r in runs), 1),
        "flagged": runs[0]["flagged"],
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (median)")
    parser.add_argument(
        "--smoke", action="store_true", help="2,000 rows, one round, no baseline variant"
    )
    parser.add_argument("--child", nargs=3, metavar=("VARIANT", "SRC", "OUT"))
    parser.add_argument(
        "--out", type=Path, default=ROOT / "benchmarks" / "results" / "near_duplicates.json"
    )
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    if args.smoke:
        args.rows, args.rounds = 2_000, 1
    from alignment.config import IngestConfig

    # a smoke run leaves out the baseline: it proves the paths, not the figures
    names = VARIANTS[1:] if args.smoke else VARIANTS
    runs: dict[str, list[dict]] = {name: [] for name in names}
    with tempfile.TemporaryDirectory() as tmp:
        src, strings = Path(tmp) / "pairs.jsonl", Path(tmp) / "strings.parquet"
        generate(src, args.rows)
        size_mb = src.stat().st_size / 2**20
        for n in range(args.rounds):
            for name in names:
                out = Path(tmp) / f"{name}-{n}"
                if name == "floor" and not strings.exists():
                    # under the flag policy the check quarantines nothing: the same rows as
                    # the plain ingest accepts
                    accepted = Path(tmp) / "ingest_near_duplicates-0" / "accepted.parquet"
                    extract(accepted, strings, IngestConfig().validate_rows)
                runs[name].append(measure(name, strings if name == "floor" else src, out))
    variants = {name: _summary(r, args.rows) for name, r in runs.items()}
    checked, floor = variants["ingest_near_duplicates"], variants["floor"]
    if checked["flagged"] != floor["flagged"]:
        raise SystemExit(
            f"the floor and the ingest flag different rows: floor {floor['flagged']} != "
            f"ingest {checked['flagged']}"
        )
    base = variants.get("ingest")
    check_s = max(checked["seconds"] - base["seconds"], 0.0) if base else None
    scale = 1_000_000 / args.rows
    result = {
        "rows": args.rows,
        "smoke": args.smoke,
        "input_mb": round(size_mb, 1),
        "planted_near_duplicate_prompts": len(NEAR_DUPLICATE_AT) / 200,
        "same_groups": True,  # the flagged rows matched, by kind
        "cpu_count": os.cpu_count(),
        "variants": variants,
        "near_duplicate_seconds": None if check_s is None else round(check_s, 3),
        "ratio_vs_floor": None if check_s is None else round(check_s / floor["seconds"], 2),
        "ratio_ingest_near_duplicates_vs_ingest": round(checked["seconds"] / base["seconds"], 2)
        if base
        else None,
        "extrapolated_1m_seconds": round(checked["seconds"] * scale, 1),
        "targets": TARGET,
    }
    result["meets"] = {
        "seconds_1m": result["extrapolated_1m_seconds"] < TARGET["seconds_1m"],
        "peak_mb": checked["peak_rss_mb"] <= TARGET["peak_mb"],
        "ratio_vs_floor": None  # a smoke run has no baseline to take the check's cost from
        if result["ratio_vs_floor"] is None
        else result["ratio_vs_floor"] <= TARGET["ratio_vs_floor"],
    }
    print(f"{'variant':24s} {'seconds':>9s} {'rows/s':>10s} {'peak MB':>9s} {'flagged':>18s}")
    for name, v in variants.items():
        flagged = f"{v['flagged']['prompt']} prompt/{v['flagged']['pair']} pair"
        print(
            f"{name:24s} {v['seconds']:9.2f} {v['rows_per_s'] or 0:10d} {v['peak_rss_mb']:9.1f} "
            f"{flagged:>18s}"
        )
    print(f"targets {TARGET}; meets {result['meets']}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
