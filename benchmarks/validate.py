"""Benchmark: ingest + validation of N realistic preference pairs against a vectorized floor.

    python benchmarks/validate.py [--rows 1000000] [--floor-repeats 3]

The input (``preference_pairs.generate``, seeded) is conversational JSONL, written as UTF-8
with 1 line in 10 \\u-escaped. Of every 200 lines:

- 4 (2%) break one rule each, cycling through 15 kinds: the 11 row rules that need no
  tokenizer (empty prompt turn, empty chosen, empty rejected, chosen equal to rejected, bad
  prompt roles, two-turn or user-role chosen, the same for rejected, a turn over max_chars,
  control characters, a non-numeric or non-finite score, chosen scored below rejected) and 4
  kinds of malformed line (broken JSON: cut short or single-quoted; bytes that are not UTF-8;
  a missing or null chosen/rejected; a field of the wrong type);
- 2 (1%) repeat an earlier clean pair exactly, and 1 (0.5%) repeats an earlier prompt with
  changed case, spacing or punctuation (a near-duplicate); 2 more reuse an earlier prompt as
  it was with new answers (several pairs per prompt, which is no defect);
- prompts are a user turn (60%), a system and a user turn (20%), or a multi-turn
  conversation with a system turn and earlier user/assistant turns (20%); answers run 10 to
  120 words, some in paragraphs, some with a code block;
- 15% of rows hold non-ASCII text, two thirds mixed with English words and a third in one
  script alone: CJK, emoji (with skin tones and ZWJ sequences; mixed only), right-to-left
  Arabic and Hebrew (with a right-to-left mark), or letters written with combining marks;
- scores are numbers on 80% of rows, absent on 10%, null on 10%.

Each measured variant runs in its own child process, and its peak memory is that process's
own (``VmHWM``: see memory.py; ``ru_maxrss`` would carry the parent's peak over the exec) or,
when higher, the sum sampled over it and its worker processes (the near-duplicate check's).
The floor does the same row checks as Arrow column kernels over the same file: lines Arrow
cannot read (broken, wrong types, non-numeric scores) are found by halving blocks and read one
by one, as ingest does, and non-ASCII prompts are normalised by Python's regex, the only
engine with Python's ``\\w``; no GX, no ids, no quarantine bookkeeping, no output. The run fails
unless both count the same rows for every rule and every kind of malformed line. Prints a
table, writes benchmarks/results/validate.json and prints that JSON as the last line.
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
from preference_pairs import (
    BAD_AT,
    BAD_KINDS,
    DUPLICATE_AT,
    MAX_CHARS,
    NEAR_DUPLICATE_AT,
    NON_ASCII_ROWS,
    REUSED_PROMPT_AT,
    generate,
)

ROOT = Path(__file__).resolve().parents[1]
TARGET = {"seconds_1m": 60.0, "peak_mb": 4096.0, "ratio_vs_floor": 5.0}
# with --near-duplicates: the ingest with the check on (the same as near_duplicates.py's)
NEAR_DUPLICATES_TARGET = {"seconds_1m": 90.0, "peak_mb": 4096.0}


def run_ingest(src: Path, out: Path, near_duplicates: bool = False) -> dict:
    from alignment.config import IngestConfig, SplitConfig, ValidationConfig
    from alignment.data.ingest import ingest_file
    from alignment.quality_config import NearDuplicateConfig, QualityConfig

    quality = QualityConfig(near_duplicates=NearDuplicateConfig(enabled=near_duplicates))
    cfg = ValidationConfig(max_rejected_fraction=0.5, max_length_bias=1.0, max_chars=MAX_CHARS)
    started = time.perf_counter()
    result = ingest_file(src, out, IngestConfig(), cfg, SplitConfig(), quality)
    return {
        "seconds": time.perf_counter() - started,
        "accepted": result.accepted,
        "rejected": result.rejected,
        "rule_failures": {k: v for k, v in result.report["rule_failures"].items() if v},
        "malformed": result.report["malformed_reasons"],
    }


_SIDES = ("prompt", "chosen", "rejected")
_FLOOR_BLOCK = 8192  # lines given to Arrow at once
_FLOOR_LINES = 64  # a refused block this small is read line by line


def _floor_line(line: bytes) -> dict | str:
    """One line Arrow refused, read as ingest reads a conversational row: the row, or the kind
    of malformed line it is ("blank" for no row)."""
    if not line.strip():
        return "blank"
    try:
        obj = json.loads(line.decode("utf-8"))
    except UnicodeDecodeError:
        return "bad_encoding"
    except json.JSONDecodeError:
        return "invalid_json"
    if not isinstance(obj, dict):
        return "not_an_object"
    if any(obj.get(side) is None for side in _SIDES):
        return "missing_field"
    row = {}
    for side in _SIDES:
        turns = obj[side]
        turns = [turns] if isinstance(turns, dict) else turns
        if isinstance(turns, str):
            turns = [{"role": "user" if side == "prompt" else "assistant", "content": turns}]
        if not isinstance(turns, list) or not all(
            isinstance(t, dict) and isinstance(t.get("role"), str)
            and isinstance(t.get("content"), str)
            for t in turns
        ):  # fmt: skip
            return "wrong_type"
        row[side] = [{"role": t["role"], "content": t["content"]} for t in turns]
    for key in ("score_chosen", "score_rejected"):
        row[key] = obj.get(key)
    return row


def _floor_score(value: object) -> tuple[float | None, bool]:
    """(the score as a float, None when absent or not a number; whether it is a bad one)."""
    if isinstance(value, str):  # numbers written as text count, as ingest reads them
        if not value.strip():
            return None, False
        try:
            value = float(value)
        except ValueError:
            return None, True
    if value is None:
        return None, False
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None, True
    return float(value), False


def run_floor(src: Path, out: Path) -> dict:
    """The same row checks as plain Arrow/numpy kernels: the least any implementation does.

    Arrow reads blocks of lines against a fixed schema; a block it refuses is halved until
    small and then read line by line (no per-row error handler exists in Arrow's JSON reader).
    Every check is a column kernel; duplicates and near-duplicates by 64-bit hashes. No GX,
    no ids, no quarantine bookkeeping, no output.
    """
    import numpy as np
    import pandas as pd
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.json as paj

    from alignment.data.splits import normalized_prompt

    messages = pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))
    schema = pa.schema(
        [(side, messages) for side in _SIDES]
        + [("score_chosen", pa.float64()), ("score_rejected", pa.float64())]
    )
    options = (
        paj.ReadOptions(use_threads=False, block_size=16 << 20),
        paj.ParseOptions(explicit_schema=schema, unexpected_field_behavior="error"),
    )
    # what str.strip() strips, so empty texts are measured as Python measures them
    whitespace = "".join(c for c in map(chr, range(0x110000)) if c.isspace())
    control = r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]"
    malformed: dict[str, int] = {}

    def arrow(data: bytes, lines: int) -> pa.Table | None:
        try:
            table = paj.read_json(pa.BufferReader(data), *options)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            return None
        if table.num_rows != lines:
            return None
        for side in _SIDES:
            col = table.column(side)
            flat = pc.list_flatten(col)
            parts = pc.struct_field(flat, "role"), pc.struct_field(flat, "content")
            if col.null_count or flat.null_count or any(p.null_count for p in parts):
                return None
            try:  # Arrow's JSON reader takes any bytes in strings: check they are UTF-8
                for part in parts:
                    part.validate(full=True)
            except pa.ArrowInvalid:
                return None
        return table

    def parse(buf: bytes, starts: np.ndarray, ends: np.ndarray) -> list[tuple]:
        """(table, scores present but bad) pieces of these lines, in order."""
        if len(starts) > _FLOOR_LINES:
            table = arrow(buf[starts[0] : ends[-1]], len(starts))
            if table is not None:
                return [(table, np.zeros(table.num_rows, dtype=bool))]
            half = len(starts) // 2
            return parse(buf, starts[:half], ends[:half]) + parse(buf, starts[half:], ends[half:])
        rows, bad_score = [], []
        for s, e in zip(starts.tolist(), ends.tolist(), strict=True):
            row = _floor_line(buf[s:e])
            if isinstance(row, str):
                if row != "blank":  # a blank line is no row
                    malformed[row] = malformed.get(row, 0) + 1
                continue
            sc, bad_c = _floor_score(row["score_chosen"])
            sr, bad_r = _floor_score(row["score_rejected"])
            row["score_chosen"], row["score_rejected"] = sc, sr
            rows.append(row)
            bad_score.append(bad_c or bad_r)
        if not rows:
            return []
        return [(pa.Table.from_pylist(rows, schema=schema), np.array(bad_score, dtype=bool))]

    def regroup(count: np.ndarray, values: pa.Array) -> pa.ListArray:
        offsets = np.zeros(len(count) + 1, dtype=np.int32)
        np.cumsum(count, out=offsets[1:])
        return pa.ListArray.from_arrays(pa.array(offsets), values)

    def checks(table: pa.Table, bad_score: np.ndarray) -> dict[str, np.ndarray]:
        n = table.num_rows
        side = {}
        for name in _SIDES:
            lists = table.column(name).combine_chunks()
            flat = pc.list_flatten(lists)
            role, content = pc.struct_field(flat, "role"), pc.struct_field(flat, "content")
            count = pc.list_value_length(lists).to_numpy(zero_copy_only=False)
            parent = pc.list_parent_indices(lists).to_numpy(zero_copy_only=False)
            side[name] = (role, content, count, parent)

        def per_row(name: str, turn_mask: pa.Array) -> np.ndarray:
            out = np.zeros(n, dtype=bool)
            out[side[name][3][turn_mask.to_numpy(zero_copy_only=False)]] = True
            return out

        def joined(name: str, sep: str) -> pa.Array:
            return pc.binary_join(regroup(side[name][2], side[name][1]), sep)

        def empty(text: pa.Array) -> np.ndarray:
            stripped = pc.utf8_length(pc.utf8_trim(text, whitespace))
            return pc.equal(stripped, 0).to_numpy(zero_copy_only=False)

        p_role, p_content, p_count, _ = side["prompt"]
        text = {name: joined(name, "\n") for name in _SIDES}
        bad = {
            "empty_prompt": per_row("prompt", pc.equal(pc.utf8_length(
                pc.utf8_trim(p_content, whitespace)), 0)) | (p_count == 0),
            "empty_chosen": empty(joined("chosen", "")),
            "empty_rejected": empty(joined("rejected", "")),
            "chosen_equals_rejected": pc.equal(text["chosen"], text["rejected"]).to_numpy(
                zero_copy_only=False
            ),
        }  # fmt: skip
        prompt_roles = per_row(
            "prompt", pc.invert(pc.is_in(p_role, pa.array(["system", "user", "assistant"])))
        )
        last = np.cumsum(p_count) - 1
        roles = p_role.to_numpy(zero_copy_only=False)
        ends_user = np.zeros(n, dtype=bool)
        ends_user[p_count > 0] = roles[last[p_count > 0]] == "user"
        bad["prompt_roles"] = prompt_roles | ~ends_user
        for name in ("chosen", "rejected"):
            role, _, count, _ = side[name]
            assistant = per_row(name, pc.equal(role, "assistant"))
            bad[f"{name}_roles"] = ~((count == 1) & assistant)
        bad["too_long"] = np.zeros(n, dtype=bool)
        for name in _SIDES:
            bad["too_long"] |= per_row(name, pc.greater(pc.utf8_length(side[name][1]), MAX_CHARS))
        bad["control_characters"] = np.zeros(n, dtype=bool)
        for name in _SIDES:
            found = pc.match_substring_regex(text[name], control)
            bad["control_characters"] |= found.to_numpy(zero_copy_only=False)
        scores = [table.column(c) for c in ("score_chosen", "score_rejected")]
        # NaN and infinities are present but bad; a null is an absent score
        sc, sr = (s.to_numpy().astype("float64") for s in scores)
        present = [pc.is_valid(s).to_numpy() for s in scores]
        bad["bad_score"] = bad_score | (present[0] & ~np.isfinite(sc))
        bad["bad_score"] |= present[1] & ~np.isfinite(sr)
        bad["score_order"] = np.isfinite(sc) & np.isfinite(sr)
        bad["score_order"][bad["score_order"]] = (sc < sr)[bad["score_order"]]
        # the whole pair, roles included, and the prompt alone, as 64-bit hashes
        keyed = {
            name: pc.binary_join(
                regroup(side[name][2], pc.binary_join_element_wise(side[name][0], side[name][1], "\x1f")),
                "\x1e",
            )
            for name in _SIDES
        }  # fmt: skip
        hashed = pd.util.hash_array
        bad["pair_key"] = hashed(
            pc.binary_join_element_wise(*keyed.values(), "\x1d").to_numpy(zero_copy_only=False)
        )
        bad["prompt_key"] = hashed(keyed["prompt"].to_numpy(zero_copy_only=False))
        # near-duplicate key: RE2's \W is ASCII-only, so other text goes through Python's regex
        prompt = text["prompt"]
        ascii_rows = pc.string_is_ascii(prompt).to_numpy(zero_copy_only=False)
        norm = pc.utf8_trim(
            pc.replace_substring_regex(pc.utf8_lower(prompt), r"[\W_]+", " "), " "
        ).to_numpy(zero_copy_only=False)
        other = np.flatnonzero(~ascii_rows)
        norm[other] = [normalized_prompt(t) for t in prompt.take(other).to_pylist()]
        bad["norm_key"] = hashed(norm)
        return bad

    started = time.perf_counter()
    parts: list[dict[str, np.ndarray]] = []
    data = src.read_bytes()
    ends = np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == 0x0A)
    if data and not data.endswith(b"\n"):
        ends = np.append(ends, len(data))
    starts = np.concatenate([[0], ends[:-1] + 1])
    for first in range(0, len(starts), _FLOOR_BLOCK):
        pieces = parse(
            data, starts[first : first + _FLOOR_BLOCK], ends[first : first + _FLOOR_BLOCK]
        )
        if pieces:
            table = pa.concat_tables([t for t, _ in pieces])
            parts.append(checks(table, np.concatenate([b for _, b in pieces])))
    bad = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    bad["duplicate"] = pd.Series(bad.pop("pair_key")).duplicated().to_numpy()
    keys = pd.DataFrame({"norm": bad.pop("norm_key"), "prompt": bad.pop("prompt_key")})
    first_spelling = keys.groupby("norm", sort=False)["prompt"].transform("first")
    bad["near_duplicate"] = (first_spelling != keys["prompt"]).to_numpy()
    any_bad = np.zeros(len(keys), dtype=bool)
    for mask in bad.values():
        any_bad |= mask
    rejected_n = int(any_bad.sum())
    return {
        "seconds": time.perf_counter() - started,
        "accepted": len(keys) - rejected_n,
        "rejected": rejected_n + sum(malformed.values()),
        "rule_failures": {k: int(v.sum()) for k, v in bad.items() if v.any()},
        "malformed": dict(sorted(malformed.items())),
    }


def child(variant: str, src: str, out: str) -> None:
    with TreePeak() as memory:  # with the near-duplicate check's worker processes
        if variant.startswith("ingest"):
            result = run_ingest(
                Path(src), Path(out), near_duplicates=variant == "ingest_near_duplicates"
            )
        else:
            result = run_floor(Path(src), Path(out))
    result["peak_rss_mb"] = memory.peak_mb
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
        "malformed": runs[0]["malformed"],
    }


COUNTS = ("accepted", "rejected", "rule_failures", "malformed")


def check_same_counts(floor: dict, ingest: dict) -> None:
    """Fail unless the floor and ingest count the same rows for every rule and every kind of
    malformed line: a floor that skips a check would not be a floor."""
    differ = [k for k in COUNTS if floor[k] != ingest[k]]
    if differ:
        lines = [f"  {k}: floor {floor[k]} != ingest {ingest[k]}" for k in differ]
        raise SystemExit("the floor and ingest do different checks:\n" + "\n".join(lines))


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
    check_same_counts(runs["floor"][0], runs["ingest"][0])
    floor_s = statistics.median(r["seconds"] for r in runs["floor"])
    variants = {name: _summary(r, args.rows, floor_s) for name, r in runs.items()}
    ours = variants["ingest"]
    scale = 1_000_000 / args.rows
    result = {
        "rows": args.rows,
        "input_mb": round(size_mb, 1),
        "input_mix": {
            "bad_rows": len(BAD_AT) / 200,
            "bad_kinds": BAD_KINDS,
            "exact_duplicates": len(DUPLICATE_AT) / 200,
            "near_duplicates": len(NEAR_DUPLICATE_AT) / 200,
            "reused_prompts": len(REUSED_PROMPT_AT) / 200,
            "non_ascii_rows": NON_ASCII_ROWS,
        },
        "same_checks": True,  # check_same_counts passed
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
    near = variants.get("ingest_near_duplicates")
    if near is not None:  # the near-duplicate check's own targets (near_duplicates.py's too)
        result["extrapolated_1m_seconds_near_duplicates"] = round(near["seconds"] * scale, 1)
        result["targets"] = {**TARGET, "near_duplicates": NEAR_DUPLICATES_TARGET}
        result["meets"]["near_duplicates_seconds_1m"] = (
            near["seconds"] * scale < NEAR_DUPLICATES_TARGET["seconds_1m"]
        )
        result["meets"]["near_duplicates_peak_mb"] = (
            near["peak_rss_mb"] <= NEAR_DUPLICATES_TARGET["peak_mb"]
        )
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
