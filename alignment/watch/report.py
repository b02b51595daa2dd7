"""A watched window as a table: Markdown (Prefect artifact), text (CLI) and one HTML page."""

from __future__ import annotations

import html
from datetime import UTC, datetime


def _when(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _num(x) -> str:
    return "-" if x is None else f"{x:.4g}"


def rows(result: dict) -> list[tuple[str, str, str]]:
    """(measure, window, champion at promotion) for every measure of the window."""
    champion = result["champion_metrics"]
    return [(k, _num(v), _num(champion.get(k))) for k, v in sorted(result["metrics"].items())]


def headline(result: dict) -> str:
    alerts = result["alerts"]
    state = {"ok": "ok", "too-few": "too few requests to alert", "alert": "ALERT"}[result["status"]]
    return (
        f"{result['model']} version {result['champion_version']}, "
        f"{_when(result['start_ms'])} to {_when(result['end_ms'])}: {state}"
        + (f" ({'; '.join(alerts)})" if alerts else "")
    )


def markdown(result: dict) -> str:
    lines = [f"## Watch: {headline(result)}", "", "| measure | window | champion at promotion |"]
    lines.append("|---|---|---|")
    lines += [f"| {a} | {b} | {c} |" for a, b, c in rows(result)]
    lines += ["", "| condition | window | champion | status | detail |", "|---|---|---|---|---|"]
    lines += [
        f"| {c['condition']} | {_num(c['candidate'])} | {_num(c['champion'])} | {c['status']} "
        f"| {c['detail']} |"
        for c in result["conditions"]
    ]
    return "\n".join(lines) + "\n"


def text(result: dict) -> str:
    lines = [headline(result), f"  {'measure':32s} {'window':>10s} {'champion':>10s}"]
    lines += [f"  {a:32s} {b:>10s} {c:>10s}" for a, b, c in rows(result)]
    failed = [c for c in result["conditions"] if c["status"] == "failed"]
    lines += [f"  FAILED {c['condition']} {c['detail']}" for c in failed]
    return "\n".join(lines)


def html_report(result: dict) -> str:
    """One self-contained page: measures against the champion, conditions, what was collected."""
    title = html.escape(f"Watch: {headline(result)}")
    measures = "".join(
        f"<tr><td>{html.escape(a)}</td><td>{b}</td><td>{c}</td></tr>" for a, b, c in rows(result)
    )
    conditions = "".join(
        f"<tr><td>{html.escape(c['condition'])}</td><td>{_num(c['candidate'])}</td>"
        f"<td>{_num(c['champion'])}</td><td>{c['status'].upper() if c['status'] == 'failed' else c['status']}"
        f"</td><td>{html.escape(c['detail'])}</td></tr>"
        for c in result["conditions"]
    )
    harmful = "".join(f"<li><code>{html.escape(t)}</code></li>" for t in result["harmful_traces"])
    return (
        f"<html><head><meta charset='utf-8'><title>{title}</title></head><body><h1>{title}</h1>"
        f"<p>Refusals read by: {html.escape(result['refusal_detector'])}. Policy: "
        f"{html.escape(result['policy'])}.</p>"
        "<h2>Measures</h2><table border='1'><tr><th>measure</th><th>window</th>"
        f"<th>champion at promotion</th></tr>{measures}</table>"
        "<h2>Conditions</h2><table border='1'><tr><th>condition</th><th>window</th>"
        f"<th>champion</th><th>status</th><th>detail</th></tr>{conditions}</table>"
        f"<h2>Harmful compliance (traces)</h2><ul>{harmful or '<li>none</li>'}</ul>"
        "</body></html>"
    )
