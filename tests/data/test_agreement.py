"""Annotator agreement in the ingest report: a planted annotator who disagrees with everyone."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from data_helpers import conv, run_cli, write_jsonl

from alignment.data.quality.agreement import cohen_kappa


def test_cohen_kappa_against_its_definition():
    assert cohen_kappa([1, 0, 1, 0], [1, 0, 1, 0]) == 1
    assert cohen_kappa([1, 0, 1, 0], [0, 1, 0, 1]) == -1
    # observed 3/4, chance 1/2: (0.75 - 0.5) / 0.5
    assert cohen_kappa([1, 1, 0, 0], [1, 1, 0, 1]) == pytest.approx(0.5)
    assert cohen_kappa([1, 1], [1, 1]) is None  # one label only: chance explains it all


def _alpha(items: list[list[int]]) -> float:
    """Krippendorff's alpha (nominal, two values) from its coincidence-matrix definition."""
    n = sum(len(v) for v in items)
    n0 = sum(v.count(0) for v in items)
    n1 = n - n0
    s = sum(v.count(0) * v.count(1) / (len(v) - 1) for v in items)
    return 1 - (n - 1) * s / (n0 * n1)


def test_ingest_reports_agreement_and_flags_the_annotator_who_disagrees(tmp_path):
    rows, labels = [], []
    for k in range(12):
        prompt, good, bad = f"Question number {k}?", f"Good answer {k}.", f"Bad answer {k}."
        if k % 2:  # the better answer sorts first in half of the items, so labels vary
            good, bad = f"A good answer {k}.", f"Weak answer {k}."
        item = []
        for who in ("ann", "bob", "cy", "dee"):
            # dee picks the worse answer on 10 of 12 items; the others always pick the better
            agrees = who != "dee" or k >= 10
            chosen, rejected = (good, bad) if agrees else (bad, good)
            rows.append(conv(prompt, chosen, rejected, meta={"annotator": who}))
            item.append(int(chosen == min(good, bad)))
        labels.append(item)
    # a row with the annotator as a top-level field counts too
    rows.append(conv("Question number 0?", "Good answer 0.", "Bad answer 0.", annotator="eve"))
    labels[0].append(labels[0][0])
    raw = write_jsonl(tmp_path / "judged.jsonl", rows)
    out = tmp_path / "out.json"
    shown = run_cli(
        "data",
        "ingest",
        str(raw),
        "--json",
        str(out),
        "--set",
        "validation.max_rejected_fraction=0.9",
        ws=tmp_path / "ws",
    )
    report = json.loads(Path(json.loads(out.read_text())["report_path"]).read_text())
    people = report["annotators"]
    assert people["annotators"] == 5 and people["judgements"] == 49
    assert people["items_judged_twice_or_more"] == 12
    assert people["krippendorff_alpha"] == pytest.approx(_alpha(labels), abs=1e-4)
    assert people["flagged"] == ["dee"]
    dee = people["per_annotator"]["dee"]
    assert dee["agreement_with_majority"] == pytest.approx(2 / 12, abs=1e-4)
    assert people["per_annotator"]["ann"]["agreement_with_majority"] == 1.0
    pair = {tuple(p["annotators"]): p for p in people["pairwise"]}
    assert pair[("ann", "bob")]["cohen_kappa"] == 1.0 and pair[("ann", "bob")]["items"] == 12
    assert pair[("ann", "dee")]["cohen_kappa"] < 0
    assert "flagged: dee" in shown.stdout
    # the tables are a page of the ingest's Data Docs, linked from GX's index and the report
    page = Path(report["annotators_page"])
    assert page.parent == Path(report["docs"]).parent
    assert 'href="annotators.html"' in Path(report["docs"]).read_text().replace("'", '"')
    assert f"agreement   {page}" in shown.stdout
    cells = _cells(page.read_text())
    assert ["Krippendorff's alpha (nominal, all annotators)", f"{_alpha(labels):.3f}"] in cells
    assert [
        "dee",
        "12",
        "12",
        f"{2 / 12:.3f}",
        f"{dee['mean_cohen_kappa']:.3f}",
        "FLAGGED",
    ] in cells
    assert ["ann", "bob", "12", "1.000"] in cells
    assert [
        "ann",
        "12",
        "12",
        "1.000",
        f"{people['per_annotator']['ann']['mean_cohen_kappa']:.3f}",
        "ok",
    ] in cells


def _cells(page: str) -> list[list[str]]:
    """The text of each table row's cells (tags stripped)."""
    import re

    return [
        [re.sub(r"<[^>]+>", "", c) for c in re.findall(r"<td>(.*?)</td>", row)]
        for row in re.findall(r"<tr>(.*?)</tr>", page)
    ]
