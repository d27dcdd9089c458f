"""The report: results.json (everything), report.md (what a person reads) and PNG plots (matplotlib, Agg)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

TARGETS = {
    "post_vs_trivial": 0.30,
    "post_p99_ms": 100.0,
    "get_vs_trivial": 0.50,
    "gateway_vs_direct": 0.70,
    "event_lag_p99_ms": 10.0,
    "expiry_p99_ms": 500.0,
}


def _f(value: Any, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def _verdict(ok: bool | None) -> str:
    return "-" if ok is None else ("met" if ok else "**missed**")


def targets(results: dict[str, Any]) -> list[tuple[str, str, str, bool | None]]:
    """(target, wanted, measured, met) for every target of the issue that this run measured."""
    rows: list[tuple[str, str, str, bool | None]] = []
    sale = results.get("flash_sale")
    if sale:
        broken = len(sale["violations"])
        rows.append(("flash sale invariants", "0 violations", str(broken), broken == 0))
    paths = results.get("paths")
    if paths:
        ratios, runs = paths["ratios"], paths["runs"]
        for label, _key, target in (
            ("POST /api/orders direct / orders trivial", "post_vs_trivial", TARGETS["post_vs_trivial"]),
            ("GET /api/tickets/:id direct / tickets trivial", "get_vs_trivial", TARGETS["get_vs_trivial"]),
            ("POST /api/orders gateway / direct", "gateway_vs_direct", TARGETS["gateway_vs_direct"]),
            ("GET /api/tickets/:id gateway / direct", "gateway_vs_direct", TARGETS["gateway_vs_direct"]),
        ):
            if label in ratios:
                rows.append((label, f"≥ {target:.0%}", f"{ratios[label]:.1%}", ratios[label] >= target))
        post = runs.get("POST /api/orders direct")
        if post:
            p99 = post["latency_ms"]["p99"]
            rows.append(
                (
                    f"POST /api/orders direct p99 at {post['connections']} connections",
                    f"≤ {TARGETS['post_p99_ms']:.0f} ms",
                    f"{p99:.1f} ms",
                    p99 <= TARGETS["post_p99_ms"],
                )
            )
    lag = results.get("event_lag")
    if lag:
        for name, listener in lag["listeners"].items():
            exact = listener.get("exact_ms", {})
            p99 = exact.get("p99", listener.get("histogram_p99_ms"))
            if p99 is not None:
                rows.append(
                    (f"event lag p99, {name}", f"≤ {TARGETS['event_lag_p99_ms']:.0f} ms", f"{p99:.1f} ms", p99 <= 10.0)
                )
    expiry = results.get("expiry")
    if expiry:
        p99 = expiry["lateness_ms"]["cancellation (order.cancelled ce-time)"].get("p99")
        if p99 is not None:
            rows.append(
                (
                    "expiry lateness p99",
                    f"≤ {TARGETS['expiry_p99_ms']:.0f} ms",
                    f"{p99:.1f} ms",
                    p99 <= TARGETS["expiry_p99_ms"],
                )
            )
    return rows


def write(folder: Path, results: dict[str, Any]) -> list[Path]:
    """Write results.json, the plots and report.md into ``folder``; returns the files written."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "results.json").write_text(json.dumps(results, indent=2, default=str))
    plots = _plots(folder, results)
    (folder / "report.md").write_text(_markdown(results, plots))
    return [folder / "results.json", folder / "report.md", *plots]


# -- markdown ----------------------------------------------------------------------------------------------------


def _markdown(results: dict[str, Any], plots: list[Path]) -> str:
    meta = results["meta"]
    out = [
        f"# Benchmark report: {meta['profile']} ({meta['started']})",
        "",
        f"Command: `{meta['command']}`. Machine: {meta['cpus']} CPUs, load average before the run "
        f"{meta['load_before']}. System: {'started in-process like `make up`' if meta['local'] else meta['base_url']}"
        f", order window {meta.get('order_window_seconds')} s. Duration {meta.get('duration_s', 0):.0f} s.",
        "",
        f"**Invariants: {'all hold' if results['invariants_ok'] else 'BROKEN'}.**",
        "",
    ]
    rows = targets(results)
    if rows:
        out += ["## Targets", "", "| target | wanted | measured | |", "|---|---|---|---|"]
        out += [f"| {name} | {wanted} | {measured} | {_verdict(ok)} |" for name, wanted, measured, ok in rows]
        out.append("")
    sale = results.get("flash_sale")
    if sale:
        s = sale["summary"]
        out += [
            "## 1. Flash sale (through the gateway)",
            "",
            f"{s['size']['sellers']} sellers, {s['size']['tickets']} tickets, {s['size']['buyers']} buyers, "
            f"{s['size']['connections']} connections (aiohttp, one process). {s['orders_created']} orders in "
            f"{s['duration_s']:.1f} s: **{s['orders_per_s']:.0f} orders/s** ({s['order_attempts']} attempts, "
            f"{s['order_attempts_per_s']:.0f}/s); {s['orders_paid']} paid, {s['orders_unpaid']} left to expire; "
            f"{s['tickets_left_unsold']} tickets never ordered.",
            "",
            "Payment latency leaves out the 404s (the payments service had no copy of the order yet; the buyer "
            "retries with a backoff from 100 ms to 500 ms); they are counted in the answers below.",
            "",
            "| latency (ms) | count | p50 | p95 | p99 | max |",
            "|---|---|---|---|---|---|",
        ]
        for label, key in (("order creation", "order_latency_ms"), ("payment", "payment_latency_ms")):
            lat = s[key]
            out.append(
                f"| {label} | {lat.get('count', 0)} | {_f(lat.get('p50'))} | {_f(lat.get('p95'))} | "
                f"{_f(lat.get('p99'))} | {_f(lat.get('max'))} |"
            )
        out += ["", "Answers: " + ", ".join(f"`{k}` x {v}" for k, v in s["order_statuses"].items()) + " (orders); "]
        out[-1] += ", ".join(f"`{k}` x {v}" for k, v in s["payment_statuses"].items()) + " (payments)."
        settle = sale["settle"]
        out += [
            "",
            f"Whole system consistent and final {_f(settle.get('seconds_after_load'))} s after the load ended, "
            f"{_f(settle.get('seconds_after_last_expiry'))} s after the last unpaid order's expiresAt "
            f"(checker + every order in its final state; polled every ~0.3 s).",
            "",
            f"Invariants: {len(sale['violations'])} violations"
            + ("." if not sale["violations"] else ":\n\n" + "\n".join(f"- {v}" for v in sale["violations"][:50])),
            "",
        ]
    paths = results.get("paths")
    if paths:
        out += [
            "## 2. Write and read paths against the ceiling",
            "",
            f"Client: wrk, {paths['threads']} threads, {paths['connections']} connections, {paths['seconds']:.0f} s "
            "per run, one after the other in this run, waiting for a quiet system between runs. "
            "`GET /api/tickets/:id` is served from the tickets service's read model, kept current by the ticket "
            "events (services/tickets/README.md, Design); every `POST /api/orders` is a real reservation.",
            "",
            "| run | req/s | p50 ms | p99 ms | max ms | answers |",
            "|---|---|---|---|---|---|",
        ]
        for name, run in paths["runs"].items():
            lat = run["latency_ms"]
            answers = ", ".join(f"{k} x {v}" for k, v in sorted(run["statuses"].items()))
            errors = {k: v for k, v in run["socket_errors"].items() if v}
            if errors:
                answers += f"; socket errors {errors}"
            if run["wrapped"]:
                answers += f"; ran out of fresh tickets {run['wrapped']} times"
            out.append(
                f"| {name} | {run['rps']:,.0f} | {lat['p50']:.1f} | {lat['p99']:.1f} | {lat['max']:.1f} | {answers} |"
            )
        out += ["", "| ratio | value |", "|---|---|"]
        out += [f"| {k} | {v:.1%} |" for k, v in paths["ratios"].items()]
        out.append("")
    lag = results.get("event_lag")
    if lag:
        out += [
            "## 3. Event lag (source commit → handler commit)",
            "",
            f"Driven by {lag['orders_created']} order creations at {lag['orders_per_s_target']:.0f}/s for "
            f"{lag['drive_seconds']:.1f} s (each is handled {4} times: order.created by tickets, expiration and "
            f"payments, the hold's ticket.updated by orders): {lag['handled_events']} events handled, "
            f"**{lag['handled_events_per_s']:.0f} events/s** (target rate {lag['target_events_per_s']:.0f}/s); "
            f"the listeners caught up {_f(lag['drain_after_drive_s'])} s after the drive ended.",
            "",
            "Histogram columns: from the services' `event_lag_seconds` (diff before/after), quantiles interpolated "
            "inside the buckets, max = upper bound of the highest bucket. Exact columns: ce-time (taken in the "
            "source transaction) to the handler's log line (written after its commit and ack; 1 ms resolution).",
            "",
            "| listener | events | hist p50 | hist p99 | hist max ≤ | exact p50 | exact p99 | exact max |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for name, row in lag["listeners"].items():
            exact = row.get("exact_ms", {})
            out.append(
                f"| {name} | {row.get('events', exact.get('count', 0))} | {_f(row.get('histogram_p50_ms'))} | "
                f"{_f(row.get('histogram_p99_ms'))} | {_f(row.get('histogram_max_bucket_ms'))} | "
                f"{_f(exact.get('p50'))} | {_f(exact.get('p99'))} | {_f(exact.get('max'))} |"
            )
        out.append("")
    expiry = results.get("expiry")
    if expiry:
        out += [
            "## 4. Expiry punctuality",
            "",
            f"{expiry['orders']} orders expiring within {expiry['expiry_window_s']:.1f} s; {expiry['cancelled']} "
            f"cancelled, {expiry['missing_cancellations']} missing, {expiry['early']} early.",
            "",
            "| lateness after expiresAt (ms) | count | p50 | p99 | max |",
            "|---|---|---|---|---|",
        ]
        for name, row in expiry["lateness_ms"].items():
            out.append(
                f"| {name} | {row.get('count', 0)} | {_f(row.get('p50'))} | {_f(row.get('p99'))} | {_f(row.get('max'))} |"
            )
        out += [
            "",
            "`order.expired` is published by nats-server from the order's JetStream message schedule, due at expiresAt "
            "(its scheduler runs at most every 250 ms when many are pending; services/expiration/README.md); "
            "the orders service's handling adds the rest.",
            "",
        ]
    foot = results.get("footprint")
    if foot:
        out += ["## 5. Footprint", "", "| process | RSS idle MiB | RSS peak (flash sale) MiB | CPU s in the sale |"]
        out.append("|---|---|---|---|")
        for name in foot["idle_rss_mib"]:
            out.append(
                f"| {name} | {foot['idle_rss_mib'][name]:.0f} | {_f(foot.get('peak_rss_mib', {}).get(name), 0)} | "
                f"{_f(foot.get('sale_cpu_s', {}).get(name), 2)} |"
            )
        out += [
            "",
            f"CPU seconds per 1,000 orders (every process of the system, from the sale's start until it settled): "
            f"**{_f(foot.get('cpu_s_per_1000_orders'), 1)}**; the load generator used "
            f"{_f(foot.get('bench_cpu_s'), 1)} s over the same period.",
            "",
        ]
    if results.get("notes"):
        out += ["## Notes", ""] + [f"- {n}" for n in results["notes"]] + [""]
    if plots:
        out += ["## Plots", ""] + [f"![{p.stem}]({p.name})" for p in plots] + [""]
    return "\n".join(out)


# -- plots -------------------------------------------------------------------------------------------------------


def _cdf(ax: Any, values: list[float], label: str) -> None:
    if not values:
        return
    ordered = sorted(values)
    n = len(ordered)
    ax.plot(ordered, [(i + 1) / n * 100 for i in range(n)], label=f"{label} (n={n})")


def _plots(folder: Path, results: dict[str, Any]) -> list[Path]:
    written: list[Path] = []

    def save(fig: Any, name: str) -> None:
        fig.tight_layout()
        path = folder / name
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)

    sale = results.get("flash_sale")
    if sale and sale.get("latencies_ms"):
        fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
        for label, values in sale["latencies_ms"].items():
            _cdf(left, values, label)
            if values:
                low, high = max(min(values), 0.1), max(values)
                bins = [low * (high / low) ** (i / 50) for i in range(51)] if high > low else 10
                right.hist(values, bins=bins, alpha=0.6, label=label)
        left.set(xscale="log", xlabel="latency (ms, log)", ylabel="% of requests", title="Flash sale: latency CDF")
        left.grid(True, which="both", alpha=0.3)
        left.legend()
        right.set(xscale="log", xlabel="latency (ms, log)", ylabel="requests", title="Flash sale: latency histogram")
        right.legend()
        save(fig, "flash_sale_latency.png")

    paths = results.get("paths")
    if paths and paths["runs"]:
        runs = paths["runs"]
        names = list(runs)
        fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5))
        colors = ["#999999" if "trivial" in n else ("#4c72b0" if "direct" in n else "#dd8452") for n in names]
        bars = left.barh(names, [runs[n]["rps"] for n in names], color=colors)
        left.bar_label(bars, fmt="%.0f", padding=3, fontsize=8)
        left.invert_yaxis()
        left.set(xlabel="requests/s (wrk)", title="Throughput: trivial ceiling (grey), direct (blue), gateway (orange)")
        for name in names:
            right.plot([v for _, v in runs[name]["cdf_ms"]], [p for p, _ in runs[name]["cdf_ms"]], label=name)
        right.set(xscale="log", xlabel="latency (ms, log)", ylabel="percentile", title="Latency by run (wrk)")
        right.grid(True, which="both", alpha=0.3)
        right.legend(fontsize=7)
        save(fig, "paths_throughput_latency.png")

    lag = results.get("event_lag")
    if lag and lag["listeners"]:
        names = list(lag["listeners"])
        fig, ax = plt.subplots(figsize=(11, 0.5 * len(names) + 2))
        rows = [lag["listeners"][n] for n in names]
        p50 = [r.get("exact_ms", {}).get("p50", r.get("histogram_p50_ms", 0)) for r in rows]
        p99 = [r.get("exact_ms", {}).get("p99", r.get("histogram_p99_ms", 0)) for r in rows]
        top = [r.get("exact_ms", {}).get("max", r.get("histogram_max_bucket_ms", 0)) for r in rows]
        y = range(len(names))
        ax.barh([i + 0.27 for i in y], top, height=0.27, label="max", color="#c44e52")
        ax.barh(list(y), p99, height=0.27, label="p99", color="#dd8452")
        ax.barh([i - 0.27 for i in y], p50, height=0.27, label="p50", color="#4c72b0")
        ax.axvline(10, color="black", linestyle="--", label="target p99 10 ms")
        ax.set_yticks(list(y), names)
        ax.invert_yaxis()
        ax.set(xscale="log", xlabel="ms (log)", title=f"Event lag at {lag['handled_events_per_s']:.0f} events/s")
        ax.legend()
        save(fig, "event_lag.png")

    expiry = results.get("expiry")
    if expiry and expiry.get("samples_ms"):
        fig, ax = plt.subplots(figsize=(9, 4.5))
        ax.hist(expiry["samples_ms"], bins=50, color="#4c72b0")
        ax.axvline(100, color="black", linestyle="--", label="target p99 100 ms")
        ax.set(
            xlabel="cancellation lateness after expiresAt (ms)",
            ylabel="orders",
            title=f"Expiry punctuality ({expiry['orders']} orders within {expiry['expiry_window_s']:.0f} s)",
        )
        ax.legend()
        save(fig, "expiry_lateness.png")

    foot = results.get("footprint")
    if foot:
        names = list(foot["idle_rss_mib"])
        fig, ax = plt.subplots(figsize=(10, 4.5))
        x = range(len(names))
        ax.bar([i - 0.2 for i in x], [foot["idle_rss_mib"][n] for n in names], width=0.4, label="idle")
        ax.bar(
            [i + 0.2 for i in x],
            [foot.get("peak_rss_mib", {}).get(n, 0) for n in names],
            width=0.4,
            label="flash sale peak",
        )
        ax.set_xticks(list(x), names, rotation=30)
        ax.set(ylabel="RSS (MiB)", title="Resident memory per process (PostgreSQL: with its backends)")
        ax.legend()
        save(fig, "rss.png")
    return written
