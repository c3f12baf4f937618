#!/usr/bin/env python3
"""stackblaze vs supervisord, circus and PM2, side by side in one run.

    . .venv/bin/activate && pip install -e '.[bench]' && python bench/compare.py [--quick]

Each peer supervises the same children (`sleep 100000`, and a C log producer) on this machine only.
Measured (median of --runs runs, default 3):

  rss100 / rss300   RSS of the supervisor's own processes with 100 / 300 idle children running
                    (stackblaze: daemon + runner; supervisord; circusd; PM2's God daemon)
  cpu_idle          user+sys CPU seconds of those processes over 30 s idle with 100 children
  start100/start300 seconds from the client command (on an already running, idle supervisor) until
                    that many children are alive (counted with psutil); for stackblaze also through
                    `stackblaze scale 0 -> N` (the engine without the deploy's build step)
  log               lines/s from the producer's first write until its 2,000,000th line is in the log
                    file(s); then every line is read back. A run that lost a line (or repeated one, or
                    reordered them) gets no speed and no ratio, the worst loss over the runs is reported,
                    and the script exits 1.
Baselines: the producer writing straight to a file, and through `cat` to a file.

See bench/README.md. Results go to bench/results/compare-*.json (gitignored).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

from compare_measure import LINE_BYTES, build_producer, correct, measure_baseline, measure_children, measure_log
from compare_peers import PM2, Circus, Peer, Stackblaze, Supervisord
from compare_procs import TRACKER

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "results"


def median(values: list[float | None]) -> float | None:
    clean = [v for v in values if v is not None]
    return statistics.median(clean) if clean else None


def fmt(value: float | None, kind: str) -> str:
    if value is None:
        return "-"
    if kind == "mb":
        return f"{value / 1e6:.1f}"
    if kind == "kb":
        return f"{value / 1e3:.1f}"
    if kind == "s":
        return f"{value:.2f}"
    if kind == "cpu":
        return f"{value:.3f}"
    if kind == "mlps":
        return f"{value / 1e6:.2f}"
    if kind == "int":
        return f"{value:,.0f}"
    return str(value)


def table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers))]

    def line(cells: list[str]) -> str:
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                         for i, (c, w) in enumerate(zip(cells, widths, strict=True)))

    return "\n".join([line(headers), "  ".join("-" * w for w in widths), *(line(r) for r in rows)])


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="10 s idle-CPU window (scaled to 30 s), 1 s settle, no stackblaze scale and "
                             "stock-rotation extras; same number of runs")
    parser.add_argument("--runs", type=int, default=3, help="runs of each measurement (median reported)")
    parser.add_argument("--peers", default="stackblaze,supervisord,circus,pm2",
                        help="comma-separated subset of stackblaze,supervisord,circus,pm2")
    parser.add_argument("--skip", default="", help="comma-separated parts to skip: children,log,baseline")
    parser.add_argument("--lines", type=int, default=2_000_000, help="lines for the log benchmark")
    parser.add_argument("--no-stock-rotation", action="store_true",
                        help="skip the extra log run of stackblaze with its stock 10 MiB x 5 rotation "
                             "(always skipped with --quick)")
    parser.add_argument("--keep", action="store_true", help="keep the temp dirs (for debugging)")
    parser.add_argument("--profile", action="store_true", help="py-spy dump of the stackblaze runner mid-log-run")
    return parser.parse_args()


def shown(result: dict[str, Any]) -> str:
    """One run's figures on one line; a log run that lost a line shows its losses, and no speed."""
    if "lost" in result and not correct(result):
        order = "" if result.get("in_order") else ", out of order"
        return (f"LOST {result['lost']:,} line(s), duplicated {result.get('duplicated', 0):,}{order} "
                f"({result.get('lines', 0):,} lines in {result.get('files', 0)} file(s)): no speed reported")
    return ", ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}"
                     for k, v in result.items() if k != "rss_each")


def losses_of(raw: dict[str, Any]) -> list[str]:
    """Every log run that did not capture every line once and in order."""
    found = []
    for group, label in (("log", "{}"), ("baseline", "baseline {}")):
        for name, runs in raw[group].items():
            for number, result in enumerate(runs, 1):
                if "lost" in result and not correct(result):
                    found.append(f"{label.format(name)}, run {number}: lost {result['lost']:,}, duplicated "
                                 f"{result.get('duplicated', 0):,}, in order: {result.get('in_order')}")
    return found


def log_speed(runs: list[dict[str, Any]]) -> float | None:
    """The median speed, only when every run captured every line: a speed with a lost line is no speed."""
    if not runs or any("error" in x or not correct(x) for x in runs):
        return None
    return median([x.get("lines_per_s") for x in runs])


def worst_loss(runs: list[dict[str, Any]]) -> float | None:
    lost = [x["lost"] for x in runs if "lost" in x]
    return max(lost) if lost else None


def summarize(raw: dict[str, Any], names: list[str]) -> dict[str, dict[str, float | None]]:
    summary: dict[str, dict[str, float | None]] = {}
    for name in names:
        ch = raw["children"].get(name, {})
        s: dict[str, float | None] = {
            "rss100": median([x.get("rss") for x in ch.get("100", [])]),
            "rss300": median([x.get("rss") for x in ch.get("300", [])]),
            "cpu_idle": median([x.get("cpu_idle_s") for x in ch.get("100", [])]),
            "cpu_idle_sched": median([x.get("cpu_idle_sched_s") for x in ch.get("100", [])]),
            "start100": median([x.get("start_s") for x in ch.get("100", [])]),
            "start300": median([x.get("start_s") for x in ch.get("300", [])]),
            "scale100": median([x.get("start_scale_s") for x in ch.get("100", [])]),
            "scale300": median([x.get("start_scale_s") for x in ch.get("300", [])]),
            "log_lps": log_speed(raw["log"].get(name, [])),
            "log_lost": worst_loss(raw["log"].get(name, [])),
        }
        s["per_child"] = (s["rss300"] - s["rss100"]) / 200 if s["rss100"] and s["rss300"] else None
        summary[name] = s
    return summary


METRICS = [
    ("RSS, 100 children (MB)", "rss100", "mb"),
    ("RSS, 300 children (MB)", "rss300", "mb"),
    ("RSS per extra child (KB)", "per_child", "kb"),
    ("idle CPU, 30 s, 100 children (s)", "cpu_idle", "cpu"),
    ("  same, from schedstat (ns clock)", "cpu_idle_sched", "cpu"),
    ("time to 100 children (s)", "start100", "s"),
    ("time to 300 children (s)", "start300", "s"),
    ("  stackblaze scale 0->100 (s)", "scale100", "s"),
    ("  stackblaze scale 0->300 (s)", "scale300", "s"),
    ("log capture (M lines/s)", "log_lps", "mlps"),
    ("log lines lost (worst run)", "log_lost", "int"),
]


def report(summary: dict[str, dict[str, float | None]], raw: dict[str, Any], *, runs: int, quick: bool,
           lines: int) -> None:
    names = list(summary)
    metrics = [m for m in METRICS if any(summary[n][m[1]] is not None for n in names)]  # drop empty rows
    print()
    print(f"medians of {runs} run(s){'; idle CPU measured over 10 s, scaled to 30 s' if quick else ''}; "
          "'-': not measured, or a log run lost a line")
    print(table(["metric", *names], [[label, *(fmt(summary[n][key], kind) for n in names)]
                                     for label, key, kind in metrics]))
    if "stackblaze" in summary and len(names) > 1:
        print()
        print("ratios: stackblaze ÷ peer (RSS, CPU, time: >1 means stackblaze uses more / is slower; "
              "log capture: >1 means stackblaze is faster; none where either side lost a line)")
        others = [n for n in names if n != "stackblaze"]
        rows = []
        for label, key, _ in [m for m in metrics if m[1] != "log_lost"]:
            mine = summary["stackblaze"][key]
            cells = []
            for other in others:
                theirs = summary[other][{"scale100": "start100", "scale300": "start300"}.get(key, key)]
                cells.append(f"{mine / theirs:.2f}x" if mine is not None and theirs else "-")
            rows.append([label, *cells])
        print(table(["metric", *others], rows))
    if raw["log"] or raw["baseline"]:
        print()
        print(f"log capture detail: {lines:,} lines of {LINE_BYTES} bytes; medians, and the worst run's loss")
        rows = []
        for name, results in [*raw["log"].items(), *((f"baseline: {k}", v) for k, v in raw["baseline"].items())]:
            ok = [x for x in results if "error" not in x]
            if not ok:
                rows.append([name, "error", "-", "-", "-", "-", "-", "-", "-"])
                continue
            speed = log_speed(results)
            rows.append([
                name,
                fmt(speed, "mlps"),
                fmt(median([x.get("seconds") for x in ok]) if speed is not None else None, "s"),
                fmt(median([x.get("lines") for x in ok]), "int"),
                fmt(worst_loss(ok), "int"),
                fmt(max(x.get("rotated", 0) for x in ok), "int"),
                str(max(x.get("files", 0) for x in ok)),
                str(ok[-1].get("bytes_per_line")),
                fmt(median([x.get("supervisor_cpu_s") for x in ok]), "s"),
            ])
        print(table(["who", "M lines/s", "seconds", "lines in files", "lost", "rotated away", "files",
                     "bytes/line", "supervisor CPU s"], rows))


def main() -> int:
    args = parse_args()
    cpu_window = 10.0 if args.quick else 30.0
    settle = 1.0 if args.quick else 2.0
    stock_rotation = not args.quick and not args.no_stock_rotation
    skip = set(filter(None, args.skip.split(",")))
    wanted = args.peers.split(",")

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)
    began = time.time()
    load = os.getloadavg()
    print(f"stackblaze bench/compare.py {'--quick ' if args.quick else ''}— {args.runs} run(s), "
          f"{psutil.cpu_count()} CPUs, load {load[0]:.2f}, Python {platform.python_version()}", flush=True)

    all_peers: dict[str, Callable[[], Peer]] = {
        "stackblaze": Stackblaze, "supervisord": Supervisord, "circus": Circus, "pm2": PM2,
    }
    peers: list[Peer] = []
    skipped: dict[str, str] = {}
    for name in wanted:
        peer = all_peers[name]()
        reason = peer.unavailable()
        if reason:
            skipped[name] = reason
            print(f"  skipping {name}: {reason}")
        else:
            peers.append(peer)
    print("  versions: " + ", ".join(f"{p.name} {p.version}" for p in peers), flush=True)
    tree = subprocess.run(["git", "-C", str(BENCH.parent), "describe", "--always", "--dirty"],
                          capture_output=True, text=True).stdout.strip() or "?"
    print(f"  stackblaze tree: {tree} (the editable install runs the working tree as it is)", flush=True)

    raw: dict[str, Any] = {"children": {}, "log": {}, "baseline": {}}
    errors: list[str] = []
    producer_dir = Path(tempfile.mkdtemp(prefix="sb-bench-producer-"))
    try:
        producer, producer_kind = build_producer(producer_dir)
        print(f"  log producer: {producer_kind}", flush=True)
        for r in range(args.runs):
            if "children" not in skip:
                for peer in peers:
                    for n in (100, 300):
                        t = time.perf_counter()
                        try:
                            res = measure_children(peer, n, cpu_window if n == 100 else None, settle, args.keep,
                                                   scale_too=not args.quick)
                        except Exception as exc:
                            errors.append(f"run {r + 1} {peer.name} {n} children: {exc}")
                            traceback.print_exc()
                            res = {"error": str(exc)}
                        raw["children"].setdefault(peer.name, {}).setdefault(str(n), []).append(res)
                        print(f"  run {r + 1}: {peer.name:12} {n} children: {shown(res)}"
                              f"  [{time.perf_counter() - t:.0f}s]", flush=True)
            if "log" not in skip:
                log_peers: list[Peer] = []
                for peer in peers:
                    if isinstance(peer, Stackblaze):
                        log_peers.append(Stackblaze(log_max_bytes=10 << 30, label="stackblaze"))  # the spec's maximum
                        if stock_rotation:
                            log_peers.append(Stackblaze(label="stackblaze (stock 10MiB x5 rotation)"))
                    else:
                        log_peers.append(peer)
                for peer in log_peers:
                    t = time.perf_counter()
                    try:
                        res = measure_log(peer, producer, args.lines, args.keep, args.profile and r == 0)
                    except Exception as exc:
                        errors.append(f"run {r + 1} {peer.name} log: {exc}")
                        traceback.print_exc()
                        res = {"error": str(exc)}
                    raw["log"].setdefault(peer.name, []).append(res)
                    print(f"  run {r + 1}: {peer.name:12} log: {shown(res)}  [{time.perf_counter() - t:.0f}s]",
                          flush=True)
            if "baseline" not in skip:
                for kind in ("direct", "cat"):
                    try:
                        res = measure_baseline(kind, producer, args.lines)
                    except Exception as exc:
                        errors.append(f"run {r + 1} baseline {kind}: {exc}")
                        res = {"error": str(exc)}
                    raw["baseline"].setdefault(kind, []).append(res)
                    print(f"  run {r + 1}: baseline {kind}: {shown(res)}", flush=True)
    except KeyboardInterrupt:
        errors.append("interrupted")
        print("interrupted: tearing down")
    finally:
        TRACKER.kill_all()
        shutil.rmtree(producer_dir, ignore_errors=True)

    summary = summarize(raw, [p.name for p in peers])
    report(summary, raw, runs=args.runs, quick=args.quick, lines=args.lines)
    losses = losses_of(raw)
    for name, reason in skipped.items():
        print(f"skipped {name}: {reason}")
    for error in errors:
        print(f"error: {error}")
    for loss in losses:
        print(f"LOST LINES: {loss}")

    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"compare-{time.strftime('%Y%m%d-%H%M%S')}{'-quick' if args.quick else ''}.json"
    out.write_text(json.dumps({
        "started": began, "seconds": time.time() - began, "quick": args.quick, "runs": args.runs,
        "cpu_window_s": cpu_window, "loadavg_at_start": load, "cpus": psutil.cpu_count(),
        "python": platform.python_version(), "versions": {p.name: p.version for p in peers}, "tree": tree,
        "skipped": skipped, "errors": errors, "losses": losses, "summary": summary, "raw": raw,
        "lines": args.lines,
    }, indent=2))
    print(f"\nresults: {out}  ({time.time() - began:.0f}s in all)")
    return 1 if errors or losses else 0


if __name__ == "__main__":
    sys.exit(main())
