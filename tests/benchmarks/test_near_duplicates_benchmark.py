"""The near-duplicate benchmark runs end to end at a tiny size and writes the keys it promises
(its figures at this size mean nothing; a floor that flags other rows than the ingest fails it)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_near_duplicates_smoke_writes_its_table_and_json(tmp_path):
    out = tmp_path / "near_duplicates.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "near_duplicates.py"), "--smoke", "--out",
         str(out)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads(out.read_text())
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == report
    assert set(report["variants"]) == {"ingest_near_duplicates", "floor"}  # smoke: no baseline
    assert report["same_groups"] is True and report["smoke"] is True
    floor, checked = report["variants"]["floor"], report["variants"]["ingest_near_duplicates"]
    assert floor["flagged"] == checked["flagged"] and sum(checked["flagged"].values()) > 0
    for key in ("near_duplicate_seconds", "ratio_vs_floor", "extrapolated_1m_seconds"):
        assert key in report
    assert checked["peak_rss_mb"] > 0 and floor["seconds"] > 0
    assert set(report["meets"]) == {"seconds_1m", "peak_mb", "ratio_vs_floor"}
    table = proc.stdout.splitlines()
    assert table[0].split()[:4] == ["variant", "seconds", "rows/s", "peak"]
    assert [line.split()[0] for line in table[1:3]] == ["ingest_near_duplicates", "floor"]
