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


def run_ingest(src: Path, out: Path) -> dict:
    from alignment.config import IngestConfig, ValidationConfig
    from alignment.data.ingest import ingest_file

    started = time.perf_counter()
    result = ingest_file(
        src, out, IngestConfig(), ValidationConfig(max_rejected_fraction=0.5, max_length_bias=1.0)
    )
    return {
        "seconds": time.perf_counter() - started,
        "accepted": result.accepted,
        "rejected": result.rejected,
        "rule_failures": {k: v for k, v in result.report["rule_failures"].items() if v},
    }


def run_floor(src: Path, out: Path) -> dict:
    """The same row checks as vectorized expressions: the least any implementation must do."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.json as paj

    started = time.perf_counter()
    table = paj.read_json(src, read_options=paj.ReadOptions(block_size=16 << 20))

    def joined(col: str) -> pa.Array:
        lst = table.column(col).combine_chunks()
        contents = pc.struct_field(pc.list_flatten(lst), "content")
        parents = pc.list_parent_indices(lst)
        # one text per row: turns joined (empty for rows with no turns)
        import pandas as pd

        series = pd.Series(contents.to_numpy(zero_copy_only=False)).groupby(parents.to_numpy())
        joined = series.agg("\n".join).reindex(range(len(lst)), fill_value="")
        return pa.array(joined.to_numpy(), pa.string())

    prompt, chosen, rejected = joined("prompt"), joined("chosen"), joined("rejected")
    roles = pc.struct_field(pc.list_flatten(table.column("prompt").combine_chunks()), "role")
    bad = {
        "empty_prompt": pc.equal(pc.utf8_length(pc.utf8_trim_whitespace(prompt)), 0),
        "empty_chosen": pc.equal(pc.utf8_length(pc.utf8_trim_whitespace(chosen)), 0),
        "empty_rejected": pc.equal(pc.utf8_length(pc.utf8_trim_whitespace(rejected)), 0),
        "chosen_equals_rejected": pc.equal(chosen, rejected),
        "too_long": pc.greater(
            pc.max_element_wise(
                pc.utf8_length(prompt), pc.utf8_length(chosen), pc.utf8_length(rejected)
            ),
            20_000,
        ),
        "control_characters": pc.match_substring_regex(
            pc.binary_join_element_wise(prompt, chosen, rejected, "\n"),
            r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]",
        ),
        "score_order": pc.less(table.column("score_chosen"), table.column("score_rejected")),
    }
    role_ok = pc.is_in(roles, pa.array(["system", "user", "assistant"]))
    import pandas as pd

    frame = pd.DataFrame({"p": prompt, "c": chosen, "r": rejected})
    bad["duplicate"] = pa.array(frame.duplicated().to_numpy())
    norm = pc.utf8_trim_whitespace(
        pc.replace_substring_regex(pc.utf8_lower(prompt), r"[\W_]+", " ")
    )
    nf = pd.DataFrame({"n": norm.to_numpy(zero_copy_only=False), "p": frame["p"]})
    first = nf.groupby("n")["p"].transform("first")
    bad["near_duplicate"] = pa.array((first != nf["p"]).to_numpy())
    any_bad = bad["empty_prompt"]
    for mask in bad.values():
        any_bad = pc.or_(any_bad, mask)
    rejected_n = pc.sum(pc.cast(any_bad, pa.int64())).as_py()
    return {
        "seconds": time.perf_counter() - started,
        "accepted": table.num_rows - rejected_n,
        "rejected": rejected_n,
        "roles_ok": pc.all(role_ok).as_py(),
    }


def child(variant: str, src: str, out: str) -> None:
    fn = run_ingest if variant == "ingest" else run_floor
    result = fn(Path(src), Path(out))
    result["peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--floor-repeats", type=int, default=3)
    parser.add_argument("--child", nargs=3, metavar=("VARIANT", "SRC", "OUT"))
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "pairs.jsonl"
        generate(src, args.rows)
        size_mb = src.stat().st_size / 2**20
        ours = measure("ingest", src, Path(tmp) / "out")
        floors = [measure("floor", src, Path(tmp) / "floor") for _ in range(args.floor_repeats)]
    floor_s = statistics.median(f["seconds"] for f in floors)
    floor = floors[0]
    scale = 1_000_000 / args.rows
    result = {
        "rows": args.rows,
        "input_mb": round(size_mb, 1),
        "cpu_count": os.cpu_count(),
        "ingest_seconds": round(ours["seconds"], 2),
        "ingest_rows_per_s": round(args.rows / ours["seconds"]),
        "ingest_peak_mb": round(ours["peak_mb"], 1),
        "floor_seconds_median": round(floor_s, 2),
        "floor_repeats": [round(f["seconds"], 2) for f in floors],
        "floor_rows_per_s": round(args.rows / floor_s),
        "floor_peak_mb": round(max(f["peak_mb"] for f in floors), 1),
        "ratio_vs_floor": round(ours["seconds"] / floor_s, 2),
        "accepted": ours["accepted"],
        "rejected": ours["rejected"],
        "floor_rejected": floor["rejected"],
        "rule_failures": ours["rule_failures"],
        "extrapolated_1m_seconds": round(ours["seconds"] * scale, 1),
        "targets": TARGET,
        "meets": {
            "seconds_1m": ours["seconds"] * scale < TARGET["seconds_1m"],
            "peak_mb": ours["peak_mb"] < TARGET["peak_mb"],
            "ratio_vs_floor": ours["seconds"] / floor_s < TARGET["ratio_vs_floor"],
        },
    }
    print(f"{'variant':10s} {'seconds':>9s} {'rows/s':>10s} {'peak MB':>9s} {'rejected':>9s}")
    print(
        f"{'ingest':10s} {ours['seconds']:9.2f} {result['ingest_rows_per_s']:10d} "
        f"{ours['peak_mb']:9.1f} {ours['rejected']:9d}"
    )
    print(
        f"{'floor':10s} {floor_s:9.2f} {result['floor_rows_per_s']:10d} "
        f"{result['floor_peak_mb']:9.1f} {floor['rejected']:9d}"
    )
    print(f"ratio_vs_floor {result['ratio_vs_floor']}  (target < {TARGET['ratio_vs_floor']})")
    out = ROOT / "benchmarks" / "results" / "validate.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
