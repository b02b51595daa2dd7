"""No credential in the repository: every tracked text file is scanned; only infra/.env.example
may hold (placeholder) values, which users copy to the gitignored infra/.env."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ALLOWED = {"infra/.env.example"}

# Credentials by their shape: key material and provider token formats.
TOKENS = re.compile(
    r"-----BEGIN [A-Z ]*PRIVATE KEY-----"
    r"|\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"  # AWS access key id
    r"|\bgh[pousr]_[A-Za-z0-9]{36}\b"  # GitHub
    r"|\bhf_[A-Za-z0-9]{30,}\b"  # Hugging Face
    r"|\bxox[abprs]-[A-Za-z0-9-]{10,}"  # Slack
    r"|\bsk-[A-Za-z0-9_-]{32,}"  # OpenAI-style API keys
)
# A value given to a credential setting in a config-like file, or inside a URL (user:value@).
SETTING = re.compile(
    r"(?i)\b[\w.-]*(?:password|passwd|secret|auth_string|api_key|access_key|token)\s*[:=]\s*"
    r"[\"']?(?P<value>[^\s\"'#,}]+)"
)
URL_PASSWORD = re.compile(r"://[^/\s:@\"'{]+:(?P<value>[^@\s/\"']+)@")
CONFIG_LIKE = re.compile(r"\.(ya?ml|ini|tmpl|env|cfg|toml|json|sh|sbatch)$|Dockerfile$|\.env\.")


def _is_reference(value: str) -> bool:
    """${VAR}, $(VAR), $VAR, {placeholder}, <placeholder>, or … in docs: not a literal secret."""
    return value.startswith(("$", "{", "<", "…")) or value in ("''", '""') or "…" in value


def find_secrets(root: Path, files: list[str]) -> list[str]:
    """'path:line: what' for each credential-looking literal in the given files."""
    found = []
    for name in files:
        if name in ALLOWED:
            continue
        try:
            text = (root / name).read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue  # binary or unreadable: not a text secret
        config_like = bool(CONFIG_LIKE.search(name))
        for number, line in enumerate(text.splitlines(), 1):
            hits = [m.group(0)[:12] + "…" for m in TOKENS.finditer(line)]
            hits += [
                "password in URL"
                for m in URL_PASSWORD.finditer(line)
                if not _is_reference(m.group("value"))
            ]
            if config_like:
                hits += [
                    f"{m.group(0).split(m.group('value'))[0].strip()} literal"
                    for m in SETTING.finditer(line)
                    if not _is_reference(m.group("value"))
                ]
            found += [f"{name}:{number}: {hit}" for hit in hits]
    return found


def _tracked() -> list[str]:
    out = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
    ).stdout
    return [name for name in out.decode().split("\0") if name]


def test_no_credentials_in_tracked_files():
    assert find_secrets(ROOT, _tracked()) == []


def test_env_example_stays_untracked_as_a_real_env():
    assert "infra/.env" not in _tracked()
    ignored = subprocess.run(["git", "check-ignore", "-q", "infra/.env"], cwd=ROOT)
    assert ignored.returncode == 0  # a user's filled-in copy can never be committed


def test_the_scan_finds_planted_credentials(tmp_path):
    planted = {
        "infra/compose.yaml": "  POSTGRES_PASSWORD: hunter2hunter2\n  OK: ${POSTGRES_PASSWORD}\n",
        # split, so this file itself holds no credential-shaped literal
        "infra/k8s/x.yaml": "url: postgresql://alignment:" + "s3cr3t@db:5432/mlflow\n",
        "alignment/x.py": 'KEY = "AKIA' + "ABCDEFGHIJKLMNOP" + '"\n',
        "deploy.sh": "export PREFECT_API_AUTH_STRING=admin:plain\n",
        "infra/.env.example": "POSTGRES_PASSWORD=change-me\n",
        "notes.md": "export MLFLOW_TRACKING_PASSWORD=…\n",
    }
    for name, text in planted.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    found = find_secrets(tmp_path, list(planted))
    assert [hit.split(":")[0] for hit in found] == [
        "infra/compose.yaml",
        "infra/k8s/x.yaml",
        "alignment/x.py",
        "deploy.sh",
    ], found
    assert found[0].startswith("infra/compose.yaml:1:")
