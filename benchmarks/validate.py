"""Benchmark: ingest + validation of N realistic preference pairs against a vectorized floor.

    python benchmarks/validate.py [--rows 1000000] [--floor-repeats 3]

Each measured variant runs in its own child process, so peak memory (ru_maxrss) is its own.
The floor does the same row checks as plain pyarrow/pandas expressions over the same file
(no quarantine bookkeeping, no GX, no Parquet output). Prints a table, writes
benchmarks/results/validate.json and prints that JSON as the last line.
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
TARGET = {"seconds_1m": 60.0, "peak_mb": 4096.0, "ratio_vs_floor": 5.0}
WORDS = [
    "the",
    "model",
    "answer",
    "question",
    "explain",
    "because",
    "data",
    "value",
    "result",
    "people",
    "time",
    "first",
    "system",
    "should",
    "would",
    "could",
    "number",
    "example",
    "python",
    "function",
    "reason",
    "simple",
    "better",
    "different",
    "important",
    "please",
    "write",
    "short",
    "list",
    "help",
    "learn",
    "code",
    "error",
    "using",
]


def generate(path: Path, rows: int, seed: int = 0) -> None:
    """Realistic pairs: varied lengths, multi-turn prompts, ~2% rows breaking a rule."""
    rng = random.Random(seed)

    def text(lo: int, hi: int) -> str:
        return " ".join(rng.choices(WORDS, k=rng.randint(lo, hi))).capitalize() + "."

    with path.open("w", encoding="utf-8") as fh:
        for i in range(rows):
            prompt = [{"role": "user", "content": f"{text(5, 30)} (#{i})"}]
            if i % 7 == 0:
                prompt = [{"role": "system", "content": "Be helpful."}, *prompt]
            chosen, rejected = text(20, 120), text(10, 110)
            kind = i % 50
            if kind == 1:
                rejected = chosen  # chosen_equals_rejected
            elif kind == 2:
                chosen = ""  # empty_chosen
            elif kind == 3:
                prompt = [{"role": "user", "content": f"Bell\x07 {i}"}]  # control_characters
            row = {
                "prompt": prompt,
                "chosen": [{"role": "assistant", "content": chosen}],
                "rejected": [{"role": "assistant", "content": rejected}],
                "score_chosen": 1.0 if kind != 4 else 0.1,  # score_order
                "score_rejected": 0.5,
            }
            fh.write(json.dumps(row) + "\n")


def run_ingest(src: Path, out: Path, near_duplicates: bool = False) -> dict:
    from alignment.config import IngestConfig, SplitConfig, ValidationConfig
    from alignment.data.ingest import ingest_file
    from alignment.quality_config import NearDuplicateConfig, QualityConfig

    quality = QualityConfig(near_duplicates=NearDuplicateConfig(enabled=near_duplicates))
    started = time.perf_counter()
    result = ingest_file(
        src,
        out,
        IngestConfig(),
        ValidationConfig(max_rejected_fraction=0.5, max_length_bias=1.0),
        SplitConfig(),
        quality,
    )
    return {
        "seconds": time.perf_counter() - started,
        "accepted": result.accepted,
        "rejected": result.rejected,
        "rule_failures": {k: v for k, v in result.report["rule_failures"].items() if v},
    }


def run_floor(src: Path, out: Path) -> dict:
    """The same row checks as plain vectorized expressions: the least any implementation does.

    Arrow reads the file in one go and every check is a column kernel (duplicates and
    near-duplicates by hashing); no GX, no quarantine bookkeeping, no per-row Python, no output.
    """
    import numpy as np
    import pandas as pd
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.json as paj

    started = time.perf_counter()
    table = paj.read_json(src, read_options=paj.ReadOptions(block_size=16 << 20))
    n = table.num_rows

    def turns(col: str) -> tuple[pa.ListArray, pa.Array, pa.Array, pa.Array]:
        lists = table.column(col).combine_chunks()
        flat = pc.list_flatten(lists)
        content, role = pc.struct_field(flat, "content"), pc.struct_field(flat, "role")
        joined = pc.binary_join(pa.ListArray.from_arrays(lists.offsets, content), "\n")
        return lists, content, role, joined

    def per_row_any(lists: pa.ListArray, mask: pa.Array) -> np.ndarray:
        out = np.zeros(n, dtype=bool)
        out[
            pc.list_parent_indices(lists).to_numpy(zero_copy_only=False)[
                mask.to_numpy(zero_copy_only=False)
            ]
        ] = True
        return out

    p_lists, p_content, p_role, prompt = turns("prompt")
    c_lists, _, c_role, chosen = turns("chosen")
    r_lists, _, r_role, rejected = turns("rejected")
    strip = pc.utf8_trim_whitespace
    bad = {
        "empty_prompt": per_row_any(p_lists, pc.equal(pc.utf8_length(strip(p_content)), 0))
        | (pc.list_value_length(p_lists).to_numpy(zero_copy_only=False) == 0),
        "empty_chosen": pc.equal(pc.utf8_length(strip(chosen)), 0).to_numpy(zero_copy_only=False),
        "empty_rejected": pc.equal(pc.utf8_length(strip(rejected)), 0).to_numpy(
            zero_copy_only=False
        ),
        "chosen_equals_rejected": pc.equal(chosen, rejected).to_numpy(zero_copy_only=False),
        "prompt_roles": per_row_any(
            p_lists, pc.invert(pc.is_in(p_role, pa.array(["system", "user", "assistant"])))
        )
        | (pc.list_value_length(p_lists).to_numpy(zero_copy_only=False) == 0),
    }
    ends = np.asarray(p_lists.offsets)[1:] - 1
    last_role = p_role.to_numpy(zero_copy_only=False)[np.maximum(ends, 0)]
    bad["prompt_roles"] |= last_role != "user"
    for name, lists, role in (("chosen", c_lists, c_role), ("rejected", r_lists, r_role)):
        one = pc.equal(pc.list_value_length(lists), 1).to_numpy(zero_copy_only=False)
        is_assistant = per_row_any(lists, pc.equal(role, "assistant"))
        bad[f"{name}_roles"] = ~(one & is_assistant)
    too_long = per_row_any(p_lists, pc.greater(pc.utf8_length(p_content), 20_000))
    for text in (chosen, rejected):
        too_long |= pc.greater(pc.utf8_length(text), 20_000).to_numpy(zero_copy_only=False)
    bad["too_long"] = too_long
    cc = r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]"
    bad["control_characters"] = (
        pc.match_substring_regex(prompt, cc).to_numpy(zero_copy_only=False)
        | pc.match_substring_regex(chosen, cc).to_numpy(zero_copy_only=False)
        | pc.match_substring_regex(rejected, cc).to_numpy(zero_copy_only=False)
    )
    sc = table.column("score_chosen").to_numpy(zero_copy_only=False).astype("float64")
    sr = table.column("score_rejected").to_numpy(zero_copy_only=False).astype("float64")
    bad["bad_score"] = np.isinf(sc) | np.isinf(sr)
    bad["score_order"] = sc < sr
    h = pd.util.hash_array
    p_hash = h(prompt.to_numpy(zero_copy_only=False))
    pair = pd.DataFrame(
        {
            "p": p_hash,
            "c": h(chosen.to_numpy(zero_copy_only=False)),
            "r": h(rejected.to_numpy(zero_copy_only=False)),
        }
    )
    bad["duplicate"] = pair.duplicated().to_numpy()
    norm = strip(pc.replace_substring_regex(pc.utf8_lower(prompt), r"[\W_]+", " "))
    keys = pd.DataFrame({"n": h(norm.to_numpy(zero_copy_only=False)), "p": p_hash})
    bad["near_duplicate"] = (keys.groupby("n")["p"].transform("first") != keys["p"]).to_numpy()
    any_bad = np.zeros(n, dtype=bool)
    for mask in bad.values():
        any_bad |= mask
    rejected_n = int(any_bad.sum())
    return {
        "seconds": time.perf_counter() - started,
        "accepted": n - rejected_n,
        "rejected": rejected_n,
        "rule_failures": {k: int(v.sum()) for k, v in bad.items() if v.any()},
    }


def child(variant: str, src: str, out: str) -> None:
    if variant.startswith("ingest"):
        result = run_ingest(
            Path(src), Path(out), near_duplicates=variant == "ingest_near_duplicates"
        )
    else:
        result = run_floor(Path(src), Path(out))
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("RESULT " + json.dumps(result))


def measure(variant: str, src: Path, out: Path, pythonpath: Path = ROOT) -> dict:
    """Run one variant in a fresh child process (its own peak RSS); ``pythonpath`` picks the
    checkout whose ``alignment`` package is measured (``--baseline``: an older one)."""
    env = {**os.environ, "PYTHONPATH": str(pythonpath), "GX_ANALYTICS_ENABLED": "false"}
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


def _summary(runs: list[dict], rows: int, floor_s: float | None) -> dict:
    seconds = statistics.median(r["seconds"] for r in runs)
    return {
        "seconds": round(seconds, 2),
        "repeats": [round(r["seconds"], 2) for r in runs],
        "rows_per_s": round(rows / seconds),
        "peak_rss_mb": round(max(r["peak_rss_mb"] for r in runs), 1),
        "ratio_vs_floor": round(seconds / floor_s, 2) if floor_s else 1.0,
        "accepted": runs[0]["accepted"],
        "rejected": runs[0]["rejected"],
        "rule_failures": runs[0]["rule_failures"],
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=1, help="ingest runs (median)")
    parser.add_argument("--floor-repeats", type=int, default=3)
    parser.add_argument(
        "--baseline", type=Path, help="also time the ingest of another checkout (its root)"
    )
    parser.add_argument(
        "--near-duplicates",
        action="store_true",
        help="also time the ingest with the MinHash near-duplicate check on (the plain "
        "ingest variant runs with it off)",
    )
    parser.add_argument("--child", nargs=3, metavar=("VARIANT", "SRC", "OUT"))
    parser.add_argument(
        "--out", type=Path, default=ROOT / "benchmarks" / "results" / "validate.json"
    )
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "pairs.jsonl"
        generate(src, args.rows)
        size_mb = src.stat().st_size / 2**20
        runs = {
            "floor": [measure("floor", src, Path(tmp) / "f") for _ in range(args.floor_repeats)]
        }
        runs["ingest"] = [measure("ingest", src, Path(tmp) / "o") for _ in range(args.repeats)]
        if args.near_duplicates:
            runs["ingest_near_duplicates"] = [
                measure("ingest_near_duplicates", src, Path(tmp) / "n") for _ in range(args.repeats)
            ]
        if args.baseline:
            runs["ingest_baseline"] = [measure("ingest", src, Path(tmp) / "b", args.baseline)]
    floor_s = statistics.median(r["seconds"] for r in runs["floor"])
    variants = {name: _summary(r, args.rows, floor_s) for name, r in runs.items()}
    ours = variants["ingest"]
    scale = 1_000_000 / args.rows
    result = {
        "rows": args.rows,
        "input_mb": round(size_mb, 1),
        "cpu_count": os.cpu_count(),
        "variants": variants,
        "extrapolated_1m_seconds": round(ours["seconds"] * scale, 1),
        "targets": TARGET,
        "meets": {
            "seconds_1m": ours["seconds"] * scale < TARGET["seconds_1m"],
            "peak_mb": ours["peak_rss_mb"] < TARGET["peak_mb"],
            "ratio_vs_floor": ours["ratio_vs_floor"] < TARGET["ratio_vs_floor"],
        },
    }
    print(
        f"{'variant':16s} {'seconds':>9s} {'rows/s':>10s} {'peak MB':>9s} {'x floor':>8s} "
        f"{'rejected':>9s}"
    )
    for name, v in variants.items():
        print(
            f"{name:16s} {v['seconds']:9.2f} {v['rows_per_s']:10d} {v['peak_rss_mb']:9.1f} "
            f"{v['ratio_vs_floor']:8.2f} {v['rejected']:9d}"
        )
    print(f"targets {TARGET}; meets {result['meets']}")
    out = args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
