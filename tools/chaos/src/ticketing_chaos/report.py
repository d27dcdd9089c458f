"""The chaos report: ``report.json`` (everything) and ``report.md`` (for people) in the run's results folder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ticketing_chaos.run import ChaosResult


def write_report(result: ChaosResult, folder: Path) -> None:
    data = result.to_dict()
    (folder / "report.json").write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    (folder / "report.md").write_text(render_markdown(result))


def _table(header: tuple[str, ...], rows: list[tuple[object, ...]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return lines


def render_markdown(result: ChaosResult) -> str:
    data = result.to_dict()
    verdict = "PASSED" if result.ok else "FAILED"
    lines = [
        f"# Chaos run {result.started_at}: {verdict}",
        "",
        f"- seed `{result.seed}`, {result.seconds:g} s of load, {result.workers} workers, "
        f"orders expire after {result.order_window_seconds} s",
        f"- faults injected (SIGKILL, then restart): **{len(result.restarts)}**",
        f"- requests made: **{result.tally.requests}**; failed: "
        + (", ".join(f"{kind} {n}" for kind, n in sorted(result.tally.failed.items())) or "none"),
        f"- unclean errors (5xx other than a 503 in the shared format): **{result.tally.kinds.get('unclean', 0)}**",
        f"- invariants broken after the system quiesced: **{result.invariants_broken}**",
        f"- components that died without being killed: **{len(result.crashes)}**"
        + (f" ({', '.join(result.crashes)})" if result.crashes else ""),
        f"- restarts that failed or never became healthy: **{len(result.failed_restarts)}**",
        f"- healthy again after the load stopped: {result.final_recovery_seconds} s",
        "",
        "## Kills and recovery (seconds from the restart until the gateway's /healthz is 200 again)",
        "",
    ]
    recovery = data["recovery"]
    lines += _table(
        ("component", "kills", "recovered", "min", "median", "max"),
        [
            (
                name,
                kills,
                recovery.get(name, {}).get("restarts", 0),
                recovery.get(name, {}).get("min", "-"),
                recovery.get(name, {}).get("median", "-"),
                recovery.get(name, {}).get("max", "-"),
            )
            for name, kills in sorted(result.kills.items())
        ],
    )
    lines += ["", "## Requests by kind", ""]
    lines += _table(("kind", "count"), sorted(result.tally.kinds.items()))
    lines += ["", "## Requests by route and status", ""]
    lines += _table(("route and status", "count"), sorted(result.tally.by_route.items()))
    lines += ["", "## What the load did", ""]
    lines += _table(("outcome", "count"), sorted(result.tally.outcomes.items()))
    lines += ["", "## Consistency check", ""]
    if result.check is None:
        lines.append("Not run: the system did not become healthy after the load.")
    else:
        lines.append("Checked " + ", ".join(f"{k} {v}" for k, v in sorted(result.check.counts.items())) + ".")
        lines.append("")
        if result.check.ok:
            lines.append("No invariant is broken.")
        for violation in result.check.violations:
            refs = " ".join(f"{k}={v}" for k, v in violation.refs.items())
            lines.append(f"- BROKEN {violation.invariant}: {violation.detail} {refs}".rstrip())
    if result.tally.unclean_samples:
        lines += ["", "## Unclean answers (samples)", ""]
        lines += [f"- {s['route']} -> {s['status']}: `{s['body']}`" for s in result.tally.unclean_samples]
    if result.unhandled_errors:
        lines += ["", "## Unhandled errors in the components' logs (first lines)", ""]
        lines += [f"- `{line}`" for line in result.unhandled_errors]
    lines += ["", "## Every fault", ""]
    lines += _table(
        ("at (s)", "component", "down (s)", "start (s)", "recovered (s)", "error"),
        [(r.at, r.component, r.pause, r.start_seconds, r.recovery_seconds, r.error or "") for r in result.restarts],
    )
    return "\n".join(lines) + "\n"
