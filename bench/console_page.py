"""The console scenario: the fleet page loading 20,000 vehicles in a headless Chromium, and what one
browser following the live fleet costs the hub.

One hub (`fleethub serve`, SQLite). First 20,000 twins: a fleet of vehicles each reports once
(in batches below the hub's open-file limit), then 15,000 of them stay connected and report every
5 s (the hub's 20,000 open files hold no more sockets). The page load is timed by the page's
own clock, from navigation start until the loaded fleet is first drawn on the map: on the idle
hub (median of three), then under load. The hub's CPU is sampled over a window without a
browser, then with the browser on the map following one vehicle, over a window as long.
Compared: CPU seconds per acknowledged message (the hub is near saturation at this rate on two
shared cores, so its CPU share alone would hide a cost) and the share of one core. The page's
main-thread busy share comes from Chromium's own performance counters.
"""

from __future__ import annotations

import gzip
import math
import re
import time
from pathlib import Path
from typing import Any

import httpx

from bench import procs
from bench.procs import Sampler
from firmware_sim.load import LoadPlan, LoadRun, Mode, ensure_fd_limit

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def _accepted(http: httpx.Client) -> float:
    text = http.get("/metrics").text
    found = re.search(r"^fleethub_ingest_messages_accepted_total (\S+)$", text, re.M)
    return float(found.group(1)) if found else 0.0


def _window(http: httpx.Client, sampler: Sampler, seconds: float) -> dict[str, Any]:
    start, acc0 = time.time(), _accepted(http)
    sampler.now()
    time.sleep(seconds)
    sampler.now()
    end, acc1 = time.time(), _accepted(http)
    cpu = sampler.window(start, end)["cpu_percent"]
    rate = (acc1 - acc0) / (end - start)
    return {
        "cpu_percent": cpu,
        "msg_s": round(rate, 1),
        "cpu_us_per_msg": round(cpu / 100.0 / rate * 1e6, 1) if cpu and rate else None,
    }


def _seed(port: int, vehicles: int, batch: int) -> None:
    """Every vehicle reports once, `batch` connections at a time, so all of them have a twin."""
    for first in range(1, vehicles + 1, batch):
        plan = LoadPlan(
            port=port,
            vehicles=min(batch, vehicles - first + 1),
            start_index=first,
            workers=2,
            mode=Mode.RATE,
            # Short enough that every vehicle reports within the run.
            interval_s=1.0,
            inflight=1,
            ramp_s=max(1.0, batch / 1000),
            warmup_s=1.0,
            measure_s=2.0,
            prefix="con-",
            connect_concurrency=128,
            connect_timeout_s=30.0,
        )
        with LoadRun(plan) as run:
            run.join()


def run(tmp: Path, *, vehicles: int, connected: int, interval_s: float, window_s: float) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    ensure_fd_limit(connected + 256)
    out: dict[str, Any] = {"vehicles": vehicles, "connected": connected, "interval_s": interval_s, "window_s": window_s}
    url = f"sqlite:///{tmp / f'console-{time.time_ns()}.db'}"
    with procs.fleethub(url) as (server, port, http_port), Sampler(server.pid) as sampler:
        base = f"http://127.0.0.1:{http_port}"
        _seed(port, vehicles, batch=min(connected, 4_000))
        with httpx.Client(base_url=base, timeout=60) as http:
            out["fleet_size"] = http.get("/api/v1/console/fleet").json()["count"]
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
                out["page_load_idle_s"] = sorted(_page_load(browser, base) for _ in range(3))[1]
                browser.close()
            plan = LoadPlan(
                port=port,
                vehicles=connected,
                workers=max(2, math.ceil(connected / 5_000)),
                mode=Mode.RATE,
                interval_s=interval_s,
                inflight=2,
                ramp_s=max(2.0, connected / 800),
                warmup_s=interval_s * 2,
                measure_s=2 * window_s + 60,
                prefix="con-",
                connect_concurrency=64,
                connect_timeout_s=30.0,
            )
            with LoadRun(plan) as load:
                time.sleep(max(0.0, load.t0 + plan.measure_from - time.time()))
                t = time.perf_counter()
                body = http.get("/api/v1/console/fleet", headers={"Accept-Encoding": "identity"}).content
                out["bulk_ms"] = round((time.perf_counter() - t) * 1000, 1)
                out["bulk_bytes"] = len(body)
                out["bulk_gzip_bytes"] = len(gzip.compress(body, 1))
                out["without_browser"] = _window(http, sampler, window_s)
                with sync_playwright() as p:
                    browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
                    page = browser.new_page(viewport={"width": 1280, "height": 800})
                    cdp = page.context.new_cdp_session(page)
                    cdp.send("Performance.enable")
                    out["page_load_under_load_s"] = _page_load(browser, base, page)
                    out["vehicles_drawn"] = int(page.locator("canvas.vehicle-canvas").get_attribute("data-drawn") or 0)
                    page.get_by_placeholder("Find a vehicle…").fill("con-00001")
                    page.keyboard.press("Enter")
                    page.get_by_label("Follow on the map").check()
                    before = _task_s(cdp)
                    t = time.monotonic()
                    out["with_browser"] = _window(http, sampler, window_s)
                    out["page_main_thread_busy"] = round((_task_s(cdp) - before) / (time.monotonic() - t), 3)
                    browser.close()
                load.join()
    a, b = out["without_browser"], out["with_browser"]
    if a["cpu_us_per_msg"] and b["cpu_us_per_msg"]:
        out["extra_cpu_per_msg_percent"] = round((b["cpu_us_per_msg"] / a["cpu_us_per_msg"] - 1) * 100, 1)
    return out


def _page_load(browser: Any, base: str, page: Any = None) -> float:
    """Seconds from navigation start until the loaded fleet is first drawn on the map (the page's own clock)."""
    own = page is None
    page = page or browser.new_page(viewport={"width": 1280, "height": 800})
    page.goto(base + "/")
    canvas = page.locator("canvas.vehicle-canvas[data-fleet-drawn-at]")
    canvas.wait_for(timeout=60_000)
    drawn_at = float(canvas.get_attribute("data-fleet-drawn-at") or "nan")
    if own:
        page.close()
    return round(drawn_at / 1000, 2)


def _task_s(cdp: Any) -> float:
    metrics = {m["name"]: m["value"] for m in cdp.send("Performance.getMetrics")["metrics"]}
    return float(metrics.get("TaskDuration", 0.0))


def main() -> int:
    import argparse
    import datetime
    import json
    import sys

    from bench.report import machine
    from bench.scenarios import make_tmp, remove_tmp

    parser = argparse.ArgumentParser(prog="python -m bench.console_page", description=__doc__.split("\n\n")[0])
    parser.add_argument("--vehicles", type=int, default=20_000, help="twins in the fleet (default 20,000)")
    parser.add_argument("--connected", type=int, default=15_000, help="of them connected and reporting")
    parser.add_argument("--interval", type=float, default=5.0, help="seconds between reports of one vehicle")
    parser.add_argument("--window", type=float, default=30.0, help="seconds of each CPU measurement")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results", help="results folder")
    args = parser.parse_args()
    tmp = make_tmp()
    try:
        result = run(
            tmp, vehicles=args.vehicles, connected=args.connected, interval_s=args.interval, window_s=args.window
        )
    finally:
        remove_tmp(tmp)
    doc = {"scenario": "console", "date": datetime.date.today().isoformat(), "machine": machine(), "result": result}
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"{doc['date']}-console.json"
    path.write_text(json.dumps(doc, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    print(f"wrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
