"""The trace viewer's pages: server-rendered HTML, no script. Every value that came with a span is escaped."""

from __future__ import annotations

import json
import zlib
from datetime import datetime
from html import escape
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

if TYPE_CHECKING:
    from ticketing_launcher.traces import SpanNode, TraceSummary

STYLE = """
:root { color-scheme: light dark; --line: #8884; --muted: #888; --error: #d33; }
body { font: 14px/1.4 system-ui, sans-serif; margin: 0; }
header { padding: .6rem 1rem; border-bottom: 1px solid var(--line); display: flex; gap: 1rem; align-items: baseline; }
header a.home { font-weight: 600; text-decoration: none; color: inherit; }
main { padding: 1rem; }
h1 { font-size: 1.25rem; margin: 0 0 .3rem; }
.muted { color: var(--muted); }
.mono, td.mono, code { font-family: ui-monospace, monospace; font-size: 12px; }
form.filter { display: flex; gap: .5rem; margin-bottom: 1rem; flex-wrap: wrap; }
form.filter input[type=search] { min-width: 22rem; }
table.traces { border-collapse: collapse; width: 100%; }
table.traces th, table.traces td { text-align: left; padding: .35rem .6rem; border-bottom: 1px solid var(--line); }
table.traces td.num { text-align: right; font-variant-numeric: tabular-nums; }
.svc { display: inline-block; padding: 0 .4rem; border-radius: .6rem; color: #fff; font-size: 12px;
       margin-right: .25rem; white-space: nowrap; }
.err { color: var(--error); font-weight: 600; }
.kind { color: var(--muted); font-size: 12px; }
.waterfall { border-top: 1px solid var(--line); margin-top: 1rem; }
.row { display: grid; grid-template-columns: minmax(18rem, 38%) 1fr; align-items: center; min-height: 1.7rem;
       border-bottom: 1px solid var(--line); }
.label { overflow: hidden; white-space: nowrap; text-overflow: ellipsis; padding-right: .5rem; }
.track { position: relative; height: 1.7rem; }
.bar { position: absolute; top: .4rem; height: .9rem; min-width: 2px; border-radius: 2px; }
.bar.error { outline: 2px solid var(--error); }
.dur { position: absolute; top: .2rem; font-size: 12px; color: var(--muted); padding: 0 .3rem; white-space: nowrap; }
.ticks { display: grid; grid-template-columns: minmax(18rem, 38%) 1fr; color: var(--muted); font-size: 12px; }
.ticks .scale { position: relative; height: 1.2rem; }
.ticks .scale span { position: absolute; transform: translateX(-50%); white-space: nowrap; }
.ticks .scale span:first-child { transform: none; }
.ticks .scale span:last-child { transform: translateX(-100%); }
details.span > summary { list-style: none; cursor: pointer; }
details.span > summary::-webkit-details-marker { display: none; }
details.span > summary:hover { background: #8881; }
details.span[open] > summary { background: #8882; }
.detail { padding: .5rem 1rem .8rem; border-bottom: 1px solid var(--line); background: #8881; }
.detail table { border-collapse: collapse; }
.detail td { padding: .1rem .8rem .1rem 0; vertical-align: top; }
.detail td:first-child { color: var(--muted); white-space: nowrap; }
.detail td pre { margin: 0; white-space: pre-wrap; font: 12px ui-monospace, monospace; }
.detail h4 { margin: .6rem 0 .2rem; font-size: 13px; }
"""


SERVICE_COLORS = {
    "gateway": "#2e7d32",
    "auth": "#6a1b9a",
    "tickets": "#1565c0",
    "orders": "#ef6c00",
    "expiration": "#5d4037",
    "payments": "#ad1457",
    "queue": "#00838f",
    "client": "#546e7a",
    "stripe": "#4527a0",
}


def color(service: str) -> str:
    """The same color for a service on every page and every run (the project's own are set apart)."""
    return SERVICE_COLORS.get(service) or f"hsl({zlib.crc32(service.encode()) % 360}, 55%, 40%)"


def duration(ns: int) -> str:
    if ns < 1_000:
        return f"{ns} ns"
    if ns < 1_000_000:
        return f"{ns / 1_000:.1f} µs"
    if ns < 1_000_000_000:
        return f"{ns / 1_000_000:.2f} ms"
    return f"{ns / 1_000_000_000:.3f} s"


def clock(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def service_badge(service: str) -> str:
    return f'<span class="svc" style="background:{color(service)}">{escape(service)}</span>'


def page(title: str, body: str) -> str:
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{STYLE}</style></head><body>"
        '<header><a class="home" href="/">ticketing traces</a>'
        '<span class="muted">spans received over OTLP/HTTP at /v1/traces</span></header>'
        f"<main>{body}</main></body></html>\n"
    )


def list_page(
    summaries: list[TraceSummary], *, services: list[str], service: str | None, text: str | None, kept: int
) -> str:
    options = ['<option value="">every service</option>'] + [
        f'<option value="{escape(name)}"{" selected" if name == service else ""}>{escape(name)}</option>'
        for name in services
    ]
    form = (
        '<form class="filter" method="get" action="/">'
        f'<select name="service" aria-label="service">{"".join(options)}</select>'
        f'<input type="search" name="q" value="{escape(text or "")}" '
        'placeholder="text in span names, attributes, ids" aria-label="text">'
        '<button type="submit">Filter</button> <a href="/">clear</a> '
        f'<a href="{escape(_list_url(service, text))}">refresh</a>'
        "</form>"
    )
    noun = "matching trace" if service or text else "trace"
    count = f'<p class="muted">{_plural(len(summaries), noun)} shown, newest first; {_plural(kept, "span")} kept.</p>'
    if not summaries:
        hint = (
            "No trace matches."
            if service or text
            else "No traces yet. Services send them here when OTEL_EXPORTER_OTLP_ENDPOINT points at this receiver "
            "(<code>make up TRACES=1</code>)."
        )
        return page("traces", form + count + f"<p>{hint}</p>")
    rows = []
    for summary in summaries:
        name = escape(summary.name)
        missing = "" if summary.root is not None else ' <span class="muted">(root span not received yet)</span>'
        errors = f' <span class="err">{summary.error_count} error(s)</span>' if summary.error_count else ""
        rows.append(
            "<tr>"
            f'<td class="mono">{clock(summary.start)}</td>'
            f'<td>{service_badge(summary.service)}<a href="/traces/{escape(summary.trace_id)}">{name}</a>'
            f"{missing}{errors}</td>"
            f"<td>{''.join(service_badge(s) for s in summary.services)}</td>"
            f'<td class="num">{summary.span_count}</td>'
            f'<td class="num">{duration(summary.duration)}</td>'
            "</tr>"
        )
    table = (
        '<table class="traces"><thead><tr><th>started</th><th>root span</th><th>services</th>'
        '<th class="num">spans</th><th class="num">duration</th></tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
    )
    return page("traces", form + count + table)


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _list_url(service: str | None, text: str | None) -> str:
    query = urlencode({key: value for key, value in (("service", service), ("q", text)) if value})
    return f"/?{query}" if query else "/"


def missing_page(trace_id: str) -> str:
    return page(
        "trace not found",
        f"<h1>No trace {escape(trace_id[:64])}</h1><p>It never arrived, or it was dropped to keep the newest "
        'spans. <a href="/">All traces</a></p>',
    )


def _value(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    return f"<pre>{escape(text)}</pre>" if "\n" in text else f'<span class="mono">{escape(text)}</span>'


def _table(pairs: list[tuple[str, Any]]) -> str:
    rows = "".join(f"<tr><td>{escape(key)}</td><td>{_value(value)}</td></tr>" for key, value in pairs)
    return f"<table>{rows}</table>"


def _detail(node: SpanNode, trace_start: int) -> str:
    span = node.span
    facts: list[tuple[str, Any]] = [
        ("service", span.service),
        ("kind", span.kind),
        ("status", span.status + (f": {span.status_message}" if span.status_message else "")),
        ("start", f"{clock(span.start)} (+{duration(span.start - trace_start)})"),
        ("duration", duration(span.duration)),
        ("span id", span.span_id),
        ("parent span id", (span.parent_span_id or "none") + (" (not received)" if node.orphan else "")),
        ("scope", span.scope),
    ]
    parts = [_table(facts)]
    if span.attributes:
        parts.append("<h4>attributes</h4>" + _table(sorted(span.attributes.items())))
    for event in span.events:
        when = f"+{duration(event.time - span.start)}"
        parts.append(f"<h4>event {escape(event.name)} <span class='muted'>{when}</span></h4>")
        if event.attributes:
            parts.append(_table(sorted(event.attributes.items())))
    if span.links:
        links = "".join(
            f'<li><a class="mono" href="/traces/{escape(trace_id)}">{escape(trace_id)}</a> '
            f'<span class="mono muted">span {escape(span_id)}</span></li>'
            for trace_id, span_id in span.links
        )
        parts.append(f"<h4>links</h4><ul>{links}</ul>")
    return f'<div class="detail">{"".join(parts)}</div>'


def _row(node: SpanNode, start: int, total: int) -> str:
    span = node.span
    left = (span.start - start) / total * 100
    width = span.duration / total * 100
    end = left + width
    place = f"left:{end:.3f}%" if end < 75 else f"right:{100 - left:.3f}%"
    label = (
        f'<div class="label" style="padding-left:{node.depth * 1.1:.1f}rem" title="{escape(span.name)}">'
        f'{service_badge(span.service)}{escape(span.name)} <span class="kind">{escape(span.kind)}</span>'
        f"{' <span class=err>error</span>' if span.status == 'error' else ''}"
        f"{' <span class=muted>(parent not received)</span>' if node.orphan else ''}</div>"
    )
    error = " error" if span.status == "error" else ""
    track = (
        f'<div class="track"><div class="bar{error}" style="left:{left:.3f}%;width:{width:.3f}%;'
        f'background:{color(span.service)}"></div><span class="dur" style="{place}">{duration(span.duration)}</span>'
        "</div>"
    )
    return (
        f'<details class="span" data-depth="{node.depth}" data-span-id="{escape(span.span_id)}">'
        f'<summary class="row">{label}{track}</summary>{_detail(node, start)}</details>'
    )


def trace_page(summary: TraceSummary, nodes: list[SpanNode]) -> str:
    """``nodes``: the trace's spans in display order (depth first, siblings by start)."""
    total = max(summary.duration, 1)
    missing = "" if summary.root is not None else ' <span class="muted">(root span not received yet)</span>'
    errors = f' · <span class="err">{summary.error_count} error(s)</span>' if summary.error_count else ""
    heading = (
        f"<h1>{service_badge(summary.service)}{escape(summary.name)}{missing}</h1>"
        f'<p class="muted">trace <span class="mono">{escape(summary.trace_id)}</span> · started {clock(summary.start)}'
        f" · {duration(summary.duration)} · {summary.span_count} spans · "
        f"{''.join(service_badge(s) for s in summary.services)}{errors} · "
        f'<a href="/api/traces/{escape(summary.trace_id)}">JSON</a></p>'
        '<p class="muted">Click a span for its attributes, events and links.</p>'
    )
    ticks = "".join(f'<span style="left:{share * 100:.0f}%">{duration(int(total * share))}</span>' for share in _SHARES)
    scale = f'<div class="ticks"><div></div><div class="scale">{ticks}</div></div>'
    rows = "".join(_row(node, summary.start, total) for node in nodes)
    return page(f"{summary.name} · trace", heading + scale + f'<div class="waterfall">{rows}</div>')


_SHARES = (0.0, 0.25, 0.5, 0.75, 1.0)
