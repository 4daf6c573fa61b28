"""Results: one JSON file per scenario, a Markdown summary with the issue's aims, PNG charts."""

from __future__ import annotations

import datetime
import json
import os
import platform
import resource
import sys
from pathlib import Path
from typing import Any

AIMS_NOTE = "aims from issue 8, measured on this machine"


def machine() -> dict[str, Any]:
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gib = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem_gib = round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return {
        "cpus": os.cpu_count(),
        "cpu_model": cpu,
        "memory_gib": mem_gib,
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "fd_limit_soft": soft,
        "fd_limit_hard": hard,
    }


def write_results(out: Path, results: list[dict[str, Any]], *, quick: bool, argv: list[str]) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    date = datetime.date.today().isoformat()
    info = machine()
    written = []
    for result in results:
        path = out / f"{date}-{result['scenario']}.json"
        doc = {"date": date, "quick": quick, "command": "python -m bench " + " ".join(argv), "machine": info, **result}
        path.write_text(json.dumps(doc, indent=2, sort_keys=False) + "\n")
        written.append(path)
    summary = out / "SUMMARY.md"
    summary.write_text(summary_markdown(results, info, date=date, quick=quick, argv=argv))
    written.append(summary)
    written.extend(charts(out, results))
    return written


# -- the summary ------------------------------------------------------------------------


def _runs(results: list[dict[str, Any]], scenario: str) -> list[dict[str, Any]]:
    for result in results:
        if result["scenario"] == scenario and result["status"] == "ok":
            return list(result["runs"])
    return []


def _find(results: list[dict[str, Any]], scenario: str, system: str | None = None, kind: str | None = None) -> Any:
    for run in _runs(results, scenario):
        if (system is None or run["system"] == system) and (kind is None or run["kind"] == kind):
            return run
    return None


def _fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def comparisons(results: list[dict[str, Any]]) -> dict[str, Any]:
    """The ratios and aims the issue asks for, from whatever ran."""
    out: dict[str, Any] = {}
    hub = _find(results, "ingest", "fleethub-sqlite", "saturate")
    ceiling = _find(results, "ceiling", "amqtt-bare")
    shadow = _runs(results, "peer")
    naive = _find(results, "naive")
    sustained = _find(results, "ingest", "fleethub-sqlite", "sustained")
    conn = _find(results, "connections")
    if hub and ceiling and ceiling["throughput_msg_s"]:
        out["ingest_vs_ceiling_percent"] = round(100.0 * hub["throughput_msg_s"] / ceiling["throughput_msg_s"], 1)
    best_shadow = max((r["throughput_msg_s"] for r in shadow), default=None)
    if hub and best_shadow:
        out["ingest_vs_shadow_multiple"] = round(hub["throughput_msg_s"] / best_shadow, 1)
    if hub and naive and naive["throughput_msg_s"]:
        out["ingest_vs_naive_multiple"] = round(hub["throughput_msg_s"] / naive["throughput_msg_s"], 2)
    if hub:
        out["ingest_max_msg_s"] = hub["throughput_msg_s"]
    if sustained:
        out["sustained_offered_msg_s"] = sustained["load"]["offered_msg_s"]
        out["sustained_msg_s"] = sustained["throughput_msg_s"]
        out["sustained_p99_ms"] = sustained["latency_ms"].get("p99_ms")
    if conn:
        out["connections_reached"] = conn["connections_reached"]
        out["rss_per_connection_kib"] = conn["rss_per_connection_kib"]
        out["storm_s"] = conn["storm_s"]
    plain, ruled = _rules_pair(results)
    if plain and ruled and plain.get("cpu_us_per_msg") and ruled.get("cpu_us_per_msg"):
        added = ruled["cpu_us_per_msg"] - plain["cpu_us_per_msg"]
        out["rules_added_percent"] = round(100.0 * added / plain["cpu_us_per_msg"], 1)
        out["rules_count"] = ruled["rules"]
    return out


def _rules_pair(results: list[dict[str, Any]]) -> tuple[Any, Any]:
    """The rules scenario's run without rules and its run with them."""
    runs = _runs(results, "rules")
    plain = next((r for r in runs if r["rules"] == 0), None)
    ruled = next((r for r in runs if r["rules"] > 0), None)
    return plain, ruled


def aims(results: list[dict[str, Any]]) -> list[tuple[str, str, str, str]]:
    c = comparisons(results)

    def verdict(ok: bool | None) -> str:
        return "not measured" if ok is None else ("met" if ok else "missed")

    rows = []
    pct = c.get("ingest_vs_ceiling_percent")
    rows.append(
        ("ingest ≥ 80% of bare amqtt at QoS 1", "≥ 80 %", _fmt(pct) + " %", verdict(None if pct is None else pct >= 80))
    )
    mult = c.get("ingest_vs_shadow_multiple")
    rows.append(
        ("≥ 10x amqtt's shadow plugin", "≥ 10x", _fmt(mult) + "x", verdict(None if mult is None else mult >= 10))
    )
    best = max(c.get("ingest_max_msg_s") or 0, c.get("sustained_msg_s") or 0) or None
    sus_ok = None
    if c.get("sustained_msg_s") is not None:
        offered = c.get("sustained_offered_msg_s") or 0
        sus_ok = offered >= 4000 and c["sustained_msg_s"] >= 0.98 * offered
    max_ok = None if best is None else best >= 4000
    rows.append(
        (
            "≥ 4,000 msg/s sustained",
            "≥ 4,000",
            f"max {_fmt(c.get('ingest_max_msg_s'))}; {_fmt(c.get('sustained_msg_s'))} of "
            f"{_fmt(c.get('sustained_offered_msg_s'))} offered",
            verdict(sus_ok if sus_ok is not None else max_ok),
        )
    )
    rss = c.get("rss_per_connection_kib")
    reached = c.get("connections_reached")
    conn_ok = None if rss is None else (rss < 50 and (reached or 0) >= 15_000)
    rows.append(
        (
            "15,000 connections under 50 KiB RSS each",
            "< 50 KiB",
            f"{_fmt(reached)} connections, {_fmt(rss)} KiB each",
            verdict(conn_ok),
        )
    )
    alerts = _find(results, "ingest", "fleethub-sqlite", "alerts")
    if alerts is None:
        rows.append(("alert p99 < 50 ms at 1,000 msg/s", "< 50 ms", "-", "not measured (no rules engine in the hub)"))
    else:
        p99 = alerts["alert_latency_ms"].get("p99_ms")
        offered = alerts["load"]["offered_msg_s"]
        ok = None if p99 is None else (p99 < 50 and offered >= 950)
        rows.append(
            (
                "alert p99 < 50 ms at 1,000 msg/s",
                "< 50 ms",
                f"p99 {_fmt(p99)} ms over {_fmt(alerts['alerts_raised'])} alerts at {_fmt(offered)} msg/s, 20 rules",
                verdict(ok),
            )
        )
    added = c.get("rules_added_percent")
    rows.append(
        (
            "rules add < 15% to the cost of a message",
            "< 15 %",
            "-" if added is None else f"{_fmt(added)} % with {_fmt(c.get('rules_count'))} rules (hub CPU per message)",
            verdict(None if added is None else added < 15),
        )
    )
    return rows


def summary_markdown(
    results: list[dict[str, Any]], info: dict[str, Any], *, date: str, quick: bool, argv: list[str]
) -> str:
    lines = [f"# fleethub benchmark, {date}{' (quick mode: numbers are not meaningful)' if quick else ''}", ""]
    lines.append(
        f"Machine: {info['cpus']} CPUs ({info['cpu_model']}), {info['memory_gib']} GiB, {info['os']}, "
        f"Python {info['python']}, open files {info['fd_limit_soft']}/{info['fd_limit_hard']} (soft/hard). "
        "Every system under test and the load generator share this machine."
    )
    lines.append("")
    lines.append(f"Command: `python -m bench {' '.join(argv)}`".rstrip())
    lines.append("")
    loads = [
        value
        for result in results
        for run in result["runs"]
        for value in run.get("machine_load") or []
        if value is not None
    ]
    if loads:
        lines.append(
            f"Machine 1-minute load average around the runs: {min(loads):.1f} to {max(loads):.1f} "
            f"(with {info['cpus']} CPUs, anything above the load the benchmark itself puts on them is other work)."
        )
        lines.append("")
    lines += main_table(results)
    lines.append("")
    lines.append("## Aims")
    lines.append("")
    lines.append("| aim | target | measured | |")
    lines.append("|---|---|---|---|")
    for aim, target, measured, verdict in aims(results):
        lines.append(f"| {aim} | {target} | {measured} | {verdict} |")
    lines.append("")
    extra = extra_tables(results)
    if extra:
        lines += extra
        lines.append("")
    lines.append("## Notes")
    lines.append("")
    for result in results:
        for note in result["notes"]:
            if note:
                lines.append(f"- **{result['scenario']}** ({result['status']}): {note}")
        if result["status"] != "ok" and not result["notes"]:
            lines.append(f"- **{result['scenario']}**: {result['status']}")
    lines.append("")
    return "\n".join(lines)


def main_table(results: list[dict[str, Any]]) -> list[str]:
    lines = [
        "| scenario | system | load | msg/s | p50 ms | p99 ms | server CPU % | server RSS MiB |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for result in results:
        if result["status"] != "ok":
            lines.append(f"| {result['scenario']} | - | {result['status']} | - | - | - | - | - |")
            continue
        for run in result["runs"]:
            if result["scenario"] in ("api", "connections"):
                continue
            server = run.get("server") or {}
            lat = run.get("latency_ms") or {}
            lines.append(
                f"| {result['scenario']} | {run['system']} | {run['kind']} | {_fmt(run.get('throughput_msg_s'))} | "
                f"{_fmt(lat.get('p50_ms'))} | {_fmt(lat.get('p99_ms'))} | {_fmt(server.get('cpu_percent'))} | "
                f"{_fmt(server.get('rss_mib'))} |"
            )
    return lines


def extra_tables(results: list[dict[str, Any]]) -> list[str]:
    lines: list[str] = []
    c = comparisons(results)
    if c:
        lines += ["## Ratios", "", "| comparison | value |", "|---|---:|"]
        labels = {
            "ingest_vs_ceiling_percent": "fleethub ingest (SQLite, saturated) as % of bare amqtt",
            "ingest_vs_shadow_multiple": "fleethub twin updates/s ÷ shadow plugin updates applied/s (best mode)",
            "ingest_vs_naive_multiple": "fleethub ingest ÷ Mosquitto + paho + PostgreSQL inserts/s",
        }
        for key, label in labels.items():
            if key in c:
                lines.append(f"| {label} | {_fmt(c[key])} |")
        lines.append("")
    peer = _runs(results, "peer")
    if peer:
        lines += [
            "## amqtt shadow plugin: what happened to the updates",
            "",
            "| mode | sent | acknowledged | applied | lost | plugin errors | applied/s |",
            "|---|---:|---:|---:|---:|---|---:|",
        ]
        for run in peer:
            errors = ", ".join(f"{k} {v}" for k, v in sorted(run["plugin_errors"].items())) or "none"
            lines.append(
                f"| {run['kind']} | {_fmt(run['updates_sent'])} | {_fmt(run['updates_acknowledged'])} | "
                f"{_fmt(run['updates_applied'])} | {_fmt(run['updates_lost'])} | {errors} | "
                f"{_fmt(run['applied_per_s'], 2)} |"
            )
        lines.append("")
    conn = _find(results, "connections")
    if conn:
        lines += [
            "## Connections",
            "",
            "| connections | connect rate /s | hub RSS before → after MiB | RSS per connection KiB | "
            "reconnect storm (all drop, return within window) |",
            "|---:|---:|---|---:|---|",
            f"| {_fmt(conn['connections_reached'])} of {_fmt(conn['connections_target'])} | "
            f"{_fmt(conn['connect_rate_per_s'])} | {_fmt(conn['hub_rss_before_mib'])} → "
            f"{_fmt(conn['hub_rss_after_mib'])} | {_fmt(conn['rss_per_connection_kib'])} | "
            f"{_fmt(conn['storm_reconnected'])} of {_fmt(conn['storm_dropped'])} back in "
            f"{_fmt(conn['storm_s'], 2)} s (window {_fmt(conn['storm_window_s'])} s) |",
            "",
        ]
    plain, ruled = _rules_pair(results)
    if plain and ruled:
        lines += [
            "## What rules add to a message",
            "",
            "| rules | msg/s | hub CPU % | hub CPU µs per message | alerts raised meanwhile |",
            "|---:|---:|---:|---:|---:|",
        ]
        for run in (plain, ruled):
            server = run.get("server") or {}
            lines.append(
                f"| {run['rules']} | {_fmt(run['throughput_msg_s'])} | {_fmt(server.get('cpu_percent'))} | "
                f"{_fmt(run.get('cpu_us_per_msg'))} | {_fmt(run.get('alerts'))} |"
            )
        lines.append("")
    api = _runs(results, "api")
    if api:
        lines += [
            "## API under ingest load",
            "",
            "| request | requests/s | p50 ms | p99 ms | errors | ingest meanwhile msg/s |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for run in api:
            lat = run["latency_ms"]
            lines.append(
                f"| {run['kind']} | {_fmt(run['requests_per_s'])} | {_fmt(lat.get('p50_ms'))} | "
                f"{_fmt(lat.get('p99_ms'))} | {run['errors']} | {_fmt(run['throughput_msg_s'])} |"
            )
        lines.append("")
    gens = [
        (result["scenario"], run)
        for result in results
        if result["status"] == "ok"
        for run in result["runs"]
        if run.get("generator")
    ]
    if gens:
        lines += [
            "## Load generator health",
            "",
            "| scenario | system | load | busiest worker CPU share | ticker lag p99 ms | at its limit? |",
            "|---|---|---|---:|---:|---|",
        ]
        seen: set[tuple[str, str, str]] = set()
        for scenario, run in gens:
            seen_key = (scenario, run["system"], run["kind"] if scenario != "api" else "")
            if seen_key in seen:
                continue
            seen.add(seen_key)
            g = run["generator"]
            lines.append(
                f"| {scenario} | {run['system']} | {run['kind'] if scenario != 'api' else 'background'} | "
                f"{_fmt(g['worker_cpu_share_max'], 2)} | {_fmt(g['loop_lag_p99_ms'])} | "
                f"{'yes' if g['saturated'] else 'no'} |"
            )
    return lines


# -- charts -----------------------------------------------------------------------------


def charts(out: Path, results: list[dict[str, Any]]) -> list[Path]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("bench: matplotlib is not installed, no charts (pip install -e '.[bench]')", file=sys.stderr)
        return []
    bars = []
    for result in results:
        if result["status"] != "ok" or result["scenario"] in ("api", "connections"):
            continue
        for run in result["runs"]:
            lat = run.get("latency_ms") or {}
            bars.append(
                (
                    f"{run['system']}\n{run['kind']}",
                    run.get("throughput_msg_s") or 0,
                    lat.get("p50_ms"),
                    lat.get("p99_ms"),
                )
            )
    written = []
    if bars:
        fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(11, 9))
        labels = [b[0] for b in bars]
        ax1.bar(range(len(bars)), [b[1] for b in bars], color="#3b7dd8")
        ax1.set_xticks(range(len(bars)), labels, fontsize=7)
        ax1.set_ylabel("messages/s (stored or acknowledged)")
        ax1.set_title("Throughput")
        for result in results:
            if result["status"] != "ok":
                continue
            for run in result["runs"]:
                series = (run.get("load") or {}).get("acks_per_s") or {}
                if result["scenario"] in ("ingest", "ceiling") and series:
                    xs = [int(k) for k in series]
                    ax2.plot(xs, list(series.values()), label=f"{run['system']} {run['kind']}")
        ax2.set_xlabel("seconds since the load started")
        ax2.set_ylabel("PUBACKs per second")
        ax2.set_title("Acknowledged messages over time")
        ax2.legend(fontsize=7)
        fig.tight_layout()
        path = out / "throughput.png"
        fig.savefig(path, dpi=90)
        plt.close(fig)
        written.append(path)

        fig, ax = plt.subplots(figsize=(11, 5))
        positions = list(range(len(bars)))
        ax.bar([x - 0.2 for x in positions], [b[2] or 0 for b in bars], width=0.4, label="p50")
        ax.bar([x + 0.2 for x in positions], [b[3] or 0 for b in bars], width=0.4, label="p99")
        ax.set_xticks(positions, labels, fontsize=7)
        ax.set_yscale("log")
        ax.set_ylabel("ms (log scale)")
        ax.set_title("Latency: publish to PUBACK (fleethub, amqtt) or to stored row (naive)")
        ax.legend()
        fig.tight_layout()
        path = out / "latency.png"
        fig.savefig(path, dpi=90)
        plt.close(fig)
        written.append(path)
    return written
