"""The annotator agreement tables as a page of the ingest's Data Docs site.

GX Core 1.x renders expectation suites and validation results only; a table that is not an
expectation's result has no renderer to host it. So the page is written beside GX's
``index.html``, in GX's own stylesheet, and a link to it is put into the index's sidebar (and
into the ingest report), so whoever opens the Data Docs finds it.
"""

from __future__ import annotations

import html
from pathlib import Path

from alignment.workspace import atomic_write_text

PAGE = "annotators.html"
_MARK = "<!-- alignment: annotator agreement -->"


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _table(head: list[str], rows: list[list[str]]) -> str:
    th = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table class='table table-sm table-bordered'><tr>{th}</tr>{body}</table>"


def agreement_html(report: dict) -> str:
    """One HTML page of ``AnnotatorAgreement.report()``: the figures over everyone, per
    annotator (agreement with the majority, mean kappa, flag) and per annotator pair."""
    alpha = report["krippendorff_alpha"]
    flagged = report["flagged"]
    people = [
        [
            html.escape(name),
            str(v["judgements"]),
            str(v["items_with_majority"]),
            _num(v["agreement_with_majority"]),
            _num(v["mean_cohen_kappa"]),
            "<strong>FLAGGED</strong>" if v["flagged"] else "ok",
        ]
        for name, v in report["per_annotator"].items()
    ]
    pairs = [
        [html.escape(p["annotators"][0]), html.escape(p["annotators"][1]), str(p["items"]),
         _num(p["cohen_kappa"])]
        for p in report["pairwise"]
    ]  # fmt: skip
    summary = _table(
        ["measure", "value"],
        [
            ["annotators", str(report["annotators"])],
            ["judgements", str(report["judgements"])],
            ["items judged twice or more", str(report["items_judged_twice_or_more"])],
            ["Krippendorff's alpha (nominal, all annotators)", _num(alpha)],
            ["flag below agreement with the majority", _num(report["min_agreement"])],
            ["flagged annotators", html.escape(", ".join(flagged) or "none")],
        ],
    )
    return (
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>Annotator agreement</title>"
        "<link rel='stylesheet' href='static/styles/data_docs_default_styles.css'></head>"
        "<body><div class='container-fluid pt-4 pl-5 pr-5'>"
        "<p><a href='index.html'>&larr; Data Docs</a></p><h1>Annotator agreement</h1>"
        "<p>Over items (same prompt and pair, either order) judged by two annotators or more. "
        "Agreement with the majority leaves out items where the others tie.</p>"
        f"{summary}<h2>Per annotator</h2>"
        + _table(
            [
                "annotator",
                "judgements",
                "items with a majority",
                "agreement with the majority",
                "mean Cohen's kappa",
                "flag",
            ],
            people,
        )
        + "<h2>Cohen's kappa per annotator pair</h2>"
        + _table(["annotator", "annotator", "shared items", "Cohen's kappa"], pairs)
        + "</div></body></html>"
    )


def write_agreement_page(docs_index: Path, report: dict) -> Path:
    """Write the page beside the Data Docs ``index.html`` and link it from there."""
    docs_index = Path(docs_index)
    page = atomic_write_text(docs_index.parent / PAGE, agreement_html(report))
    index = docs_index.read_text(encoding="utf-8")
    if _MARK not in index:
        flagged = ", ".join(report["flagged"]) or "none"
        link = (
            f"{_MARK}<div class='col-12 p-0 mb-3'><a href='{PAGE}'><strong>Annotator "
            f"agreement</strong></a>: alpha {_num(report['krippendorff_alpha'])}, flagged: "
            f"{html.escape(flagged)}</div>"
        )
        # GX's sidebar when it is there, else the top of the page (the no-rows summary page)
        for anchor in ('<div class="sticky">', "<body>"):
            if anchor in index:
                index = index.replace(anchor, anchor + link, 1)
                break
        else:
            index = link + index
        atomic_write_text(docs_index, index)
    return page
