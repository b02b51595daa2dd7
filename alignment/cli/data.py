"""``alignment data ...``: ingest, and the recorded versions of a dataset."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from alignment.cli.common import add_common, add_format, config_from, server_limit, write_json
from alignment.errors import AlignmentError


def cmd_ingest(args: argparse.Namespace) -> int:
    cfg = config_from(args)
    from alignment.data.ingest import ingest_file, summary_lines
    from alignment.data.quality.history import earlier_signatures, keep_signatures
    from alignment.errors import ValidationFailed
    from alignment.workspace import Workspace, remove_dead_partials, unique_dir

    ws = Workspace.from_config(cfg.workspace).ensure()
    if args.file and args.input and args.file != args.input:
        raise AlignmentError(
            f"two inputs given: {args.file} and --input {args.input}; pass one of them"
        )
    given = args.file or args.input
    source = Path(given) if given else cfg.ingest.input
    if source is None:
        raise AlignmentError("no input: pass FILE (or --input FILE) or set ingest.input")
    remove_dead_partials(ws.staging)
    out = Path(args.out) if args.out else unique_dir(ws.staging, cfg.ingest.dataset)
    try:
        result = ingest_file(
            source,
            out,
            cfg.ingest,
            cfg.validation,
            cfg.split,
            cfg.quality,
            earlier_signatures(ws, cfg.ingest.dataset, cfg.quality.near_duplicates),
        )
    except ValidationFailed as exc:
        print(str(exc), file=sys.stderr)
        return 3
    print("\n".join(summary_lines(result)))
    payload = {
        "accepted_path": str(result.accepted_path),
        "rejected_path": str(result.rejected_path),
        "report_path": str(result.report_path),
        "accepted": result.accepted,
        "rejected": result.rejected,
    }
    if args.version or args.print_commands:
        from alignment.data.version import version_dataset

        with server_limit(f"version-{cfg.ingest.dataset}", "versioning run"):
            version = version_dataset(ws, cfg.ingest.dataset, out, commit=not args.print_commands)
        keep_signatures(ws, cfg.ingest.dataset, version.id, out)
        if version.commands:
            print(f"data version {version.id}: added to DVC; record it with:")
            print("\n".join(f"  {command}" for command in version.commands))
        else:
            state = "new" if version.created else "already versioned"
            print(f"data version {version.id} ({state}), tag {version.tag}")
        payload["data_version"] = version.to_dict()
    write_json(args.json, payload)
    return 0


def cmd_versions(args: argparse.Namespace) -> int:
    cfg = config_from(args)
    from alignment.data.version import list_versions
    from alignment.workspace import Workspace

    ws = Workspace.from_config(cfg.workspace)
    versions = list_versions(ws, args.dataset or cfg.ingest.dataset)
    if not versions:
        print("no versions recorded yet")
    for v in versions:
        print(f"{v.id}  {v.tag}  commit {v.git_commit[:10]}")
    return 0


def cmd_data_show(args: argparse.Namespace) -> int:
    cfg = config_from(args)
    from alignment.data.formats.detect import describe_columns
    from alignment.data.version import show_version
    from alignment.workspace import Workspace

    info = show_version(
        Workspace.from_config(cfg.workspace), args.dataset or cfg.ingest.dataset, args.version_id
    )
    for key in ("id", "tag", "git_commit", "source", "detected_format", "input_rows"):
        print(f"{key:22s} {info[key]}")
    if info["columns"]:
        print(f"{'columns':22s} {describe_columns(info['columns'])}")
    if len(info["files"]) > 1 or info["columns"] or info["read_counts"]:
        for f in info["files"]:
            print(f"  {f['source']:20s} {f['format']} ({f['rows']} rows)")
    for key, value in info["read_counts"].items():
        print(f"  {key:20s} {value}")
    print(
        f"{'rows':22s} {info['accepted']} accepted, {info['rejected']} rejected "
        f"({(info['rejected_fraction'] or 0):.1%})"
    )
    for key, value in {**info["rule_failures"], **info["malformed_reasons"]}.items():
        print(f"  {key:20s} {value}")
    for key, value in info["statistics"].items():
        print(f"{key:22s} {value}")
    from alignment.data.landing import landing_file_state

    for file in info["landing_files"]:
        file["state"] = landing_file_state(file)  # unchanged, changed since, or gone
        print(
            f"{'landing file':22s} {file['path']}  {file['size']} bytes  "
            f"sha256 {file['sha256']}  {file['state']}"
        )
    write_json(args.json, info)
    return 0


def cmd_data_diff(args: argparse.Namespace) -> int:
    cfg = config_from(args)
    from alignment.data.quality.drift import compare_versions, html_report
    from alignment.data.quality.drift import summary_lines as drift_lines
    from alignment.data.version import diff_versions
    from alignment.workspace import Workspace

    ws = Workspace.from_config(cfg.workspace)
    dataset = args.dataset or cfg.ingest.dataset
    diff = diff_versions(ws, dataset, args.v1, args.v2)
    print(
        f"{diff['v1'][:12]} -> {diff['v2'][:12]}: +{diff['added']} rows, "
        f"-{diff['removed']} rows, {diff['unchanged']} unchanged"
    )
    print(f"{'':26s} {diff['v1'][:12]:>14s} {diff['v2'][:12]:>14s}")
    for key, (a, b) in diff["side_by_side"].items():
        print(f"{key:26s} {a!s:>14s} {b!s:>14s}")
    drift = compare_versions(ws, dataset, diff["v1"], diff["v2"], cfg.quality.drift)
    print("\n".join(drift_lines(drift)))
    if args.html:
        from alignment.workspace import atomic_write_text

        print(f"drift report {atomic_write_text(Path(args.html), html_report(drift))}")
    write_json(args.json, {**diff, "drift": drift})
    return 0


def cmd_data_split(args: argparse.Namespace) -> int:
    cfg = config_from(args)
    import json

    import pandas as pd

    from alignment.data.splits import split_by_prompt
    from alignment.workspace import atomic_write_bytes

    folder, out = Path(args.ingested), Path(args.out)
    accepted, report_path = folder / "accepted.parquet", folder / "report.json"
    for path in (accepted, report_path):
        if not path.is_file():
            raise AlignmentError(f"{path} is missing: give the folder `data ingest --out` wrote")
    report = json.loads(report_path.read_text())
    groups = (report.get("near_duplicates") or {}).get("split_buckets")
    train, evaluation = split_by_prompt(pd.read_parquet(accepted), cfg.split.eval_fraction, groups)
    for frame, name in ((train, "train.parquet"), (evaluation, "eval.parquet")):
        atomic_write_bytes(out / name, frame.to_parquet(index=False))
    print(f"{len(train)} train and {len(evaluation)} eval rows in {out}")
    write_json(args.json, {"train_rows": len(train), "eval_rows": len(evaluation)})
    return 0


def cmd_data_label_noise(args: argparse.Namespace) -> int:
    config_from(args)
    import pyarrow.parquet as pq

    from alignment.data.quality.label_noise import find_label_noise, write_review_sheet

    source = Path(args.source)
    path = source / "accepted.parquet" if source.is_dir() else source
    if not path.is_file():
        raise AlignmentError(f"{path} is missing: give accepted rows (Parquet) or their folder")
    table = pq.read_table(path)
    try:
        found = find_label_noise(table, folds=args.folds, seed=args.seed)
    except ValueError as exc:
        raise AlignmentError(f"{path}: {exc}") from exc
    sheet = write_review_sheet(table, found, Path(args.csv))
    flagged = [found.ids[i] for i in found.ranked()]
    print(
        f"{len(flagged)} of {table.num_rows} pairs flagged as likely mislabelled; review sheet "
        f"{sheet}: write agree or flip in the verdict column, then `alignment cai review apply "
        f"--labelled {path} --csv {sheet} --out FIXED.jsonl` and ingest FIXED.jsonl"
    )
    write_json(args.json, {"pairs": table.num_rows, "flagged": flagged, "review_csv": str(sheet)})
    return 0


def cmd_data_get(args: argparse.Namespace) -> int:
    cfg = config_from(args)
    from alignment.data.version import get_version
    from alignment.workspace import Workspace

    out = Path(args.out or args.file)
    path = get_version(
        Workspace.from_config(cfg.workspace),
        args.dataset or cfg.ingest.dataset,
        args.version_id,
        out,
        args.file,
    )
    print(path)
    write_json(args.json, {"path": str(path)})
    return 0


def cmd_data_verify(args: argparse.Namespace) -> int:
    cfg = config_from(args)
    from alignment.data.integrity import verify_versions
    from alignment.workspace import Workspace

    ws = Workspace.from_config(cfg.workspace)
    checks = verify_versions(ws, args.dataset, args.version_id, remote=not args.no_remote)
    for check in checks:
        print(check.line())
    bad = [c for c in checks if not c.ok]
    what = args.dataset or "every dataset"
    print(f"{len(checks)} versions of {what} checked, {len(bad)} with problems")
    write_json(args.json, {"versions": [c.__dict__ for c in checks], "problems": len(bad)})
    return 1 if bad else 0


def register(sub) -> None:
    """``alignment data ...``."""
    data = sub.add_parser("data", help="preference data").add_subparsers(
        dest="data_command", required=True
    )
    p = data.add_parser("ingest", help="read, normalize and validate a preference file")
    add_common(p)
    p.add_argument("file", nargs="?", help="raw file or folder (overrides ingest.input)")
    p.add_argument("--input", "-i", help="the same as FILE")
    add_format(p)
    p.add_argument("--out", help="folder for accepted/rejected rows and the report")
    p.add_argument("--version", action="store_true", help="also version the result with DVC")
    p.add_argument(
        "--print-commands",
        action="store_true",
        help="version with DVC but print the git commit/tag and dvc push commands "
        "instead of running them",
    )
    p.set_defaults(func=cmd_ingest)
    p = data.add_parser("versions", help="list the recorded versions of a dataset")
    add_common(p)
    p.add_argument("--dataset", help="dataset name (default ingest.dataset)")
    p.set_defaults(func=cmd_versions)
    p = data.add_parser("show", help="counts, rule failures and statistics of one version")
    add_common(p)
    p.add_argument("version_id", help="version id (or a prefix) or tag")
    p.add_argument("--dataset", help="dataset name (default ingest.dataset)")
    p.set_defaults(func=cmd_data_show)
    p = data.add_parser(
        "diff", help="rows added/removed, statistics and drift (quality.drift) of two versions"
    )
    add_common(p)
    p.add_argument("v1")
    p.add_argument("v2")
    p.add_argument("--html", help="also write the drift report as an HTML page here")
    p.add_argument("--dataset", help="dataset name (default ingest.dataset)")
    p.set_defaults(func=cmd_data_diff)
    p = data.add_parser(
        "split", help="split ingested rows into train/eval by prompt (near-duplicate groups whole)"
    )
    add_common(p)
    p.add_argument("ingested", help="the folder `data ingest --out` wrote")
    p.add_argument("--out", required=True, help="folder for train.parquet and eval.parquet")
    p.set_defaults(func=cmd_data_split)
    p = data.add_parser(
        "label-noise",
        help="flag pairs whose label cross-validated reward models contradict; write a review sheet",
    )
    add_common(p)
    p.add_argument("source", help="accepted rows (Parquet) or the folder holding accepted.parquet")
    p.add_argument("--csv", required=True, help="review sheet to write (cai review's format)")
    p.add_argument("--folds", type=int, default=5, help="cross-validation folds")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_data_label_noise)
    p = data.add_parser("get", help="restore the exact bytes of a version's file")
    add_common(p)
    p.add_argument("version_id", help="version id (or a prefix) or tag")
    p.add_argument("--dataset", help="dataset name (default ingest.dataset)")
    p.add_argument(
        "--file",
        default="accepted.parquet",
        choices=["accepted.parquet", "rejected.parquet", "report.json"],
    )
    p.add_argument("--out", help="where to write it (default: the file name, here)")
    p.set_defaults(func=cmd_data_get)
    p = data.add_parser(
        "verify",
        help="check every recorded version: cache and remote objects, hashes, Parquet, row counts",
    )
    add_common(p)
    p.add_argument("dataset", nargs="?", help="only this dataset (default: every dataset)")
    p.add_argument("--version-id", help="only this version (id prefix or tag)")
    p.add_argument("--no-remote", action="store_true", help="check the local DVC cache only")
    p.set_defaults(func=cmd_data_verify)
