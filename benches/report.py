#!/usr/bin/env python3
"""Turns benches/bench.py's results.json into BENCHMARKS.md: one table with
absolute figures and ratios to heartwatch, the targets of issue 8 checked,
the RSS experiments, the machine and versions, and benches/analysis.md."""

import argparse
import json
import os
import platform
import re
import subprocess
import time

HERE = os.path.dirname(os.path.abspath(__file__))

NAMES = {
    "heartwatch": "heartwatch (CheckInterval=1s)",
    "heartwatch-default": "heartwatch (default CheckInterval, MaxAge/10 = 500ms)",
    "heartwatch-100ms": "heartwatch (CheckInterval=100ms)",
    "heartwatch-periodic": "heartwatch on the periodic stat, as on NFS or FUSE (CheckInterval=1s)",
    "heartwatch-periodic-default": "heartwatch on the periodic stat, as on NFS or FUSE (default CheckInterval)",
    "heartwatch-idle": "heartwatch, idle host (MaxAge=2h, files untouched, systemd pings every 5 s)",
    "watchdog": "watchdog 5.16 (interval = 1)",
    "monit": "monit 5.33 (set daemon 1)",
}


def sh(cmd):
    try:
        return subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=30).stdout.strip()
    except Exception:
        return "?"


def mib(kib):
    return f"{kib / 1024:.2f}"


def ms(v):
    if v is None:
        return "—"
    if v >= 1000:
        return f"{v / 1000:.2f} s"
    if v >= 10:
        return f"{v:.0f} ms"
    return f"{v:.2f} ms"


def ratio(v, base):
    if v is None or not base:
        return ""
    return f" ({v / base:.1f}×)"


def lat(r, key):
    """`median / max` of a latency, and the median for ratios."""
    s = r.get(key)
    missed = r.get(f"{key}_timeouts", 0) or 0
    bound = r.get("stale_bound_s", 5) if key == "stale" else 5
    if not s:
        return (f"none of {missed} within {bound:.0f} s" if missed else "—"), None
    text = f"{ms(s['median_ms'])} / {ms(s['max_ms'])}"
    if missed:
        text += f" (+{missed} not within {bound:.0f} s)"
    return text, s["median_ms"]


def table(results):
    head = ("| workload | daemon | peak RSS MiB | steady RSS MiB | CPU ms per s | CPU s in window (/proc/PID/stat) "
            "| wakeups/s all threads (main) | stale: median / max past deadline | death: median / max "
            "| start → first verdict |")
    rows = [head, "|" + "---|" * 10]
    base = {}
    for r in results:
        if r["daemon"] == "heartwatch":
            base[r["workload"]] = r
    for r in results:
        if r["workload"].startswith("rss"):
            continue
        b = base.get(r["workload"])
        peer = r["daemon"] in ("watchdog", "monit")
        stale, stale_med = lat(r, "stale")
        death, death_med = lat(r, "death")
        if peer and b:
            if stale_med is not None and b.get("stale"):
                stale += ratio(stale_med, b["stale"]["median_ms"])
            if death_med is not None and b.get("death"):
                death += ratio(death_med, b["death"]["median_ms"])
        fv = r.get("first_verdict_ms")
        cells = [
            r["workload"],
            NAMES.get(r["daemon"], r["daemon"]),
            mib(r["rss_peak_kib"]) + (ratio(r["rss_peak_kib"], b["rss_peak_kib"]) if peer and b else ""),
            mib(r["rss_steady_kib"]) + (ratio(r["rss_steady_kib"], b["rss_steady_kib"]) if peer and b else ""),
            f"{r['cpu_ms_per_s']:.2f}" + (ratio(r["cpu_ms_per_s"], b["cpu_ms_per_s"]) if peer and b else ""),
            f"{r['cpu_s_stat']:.2f} in {r['window_s']:.0f} s",
            f"{r['wakeups_per_s']:.0f} ({r['wakeups_main_per_s']:.0f})",
            stale,
            death,
            (ms(fv) if fv else f"none in {r.get('first_verdict_bound_s', 120):.0f} s")
            + (ratio(fv, b.get("first_verdict_ms")) if peer and b and fv else ""),
        ]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def find(results, workload, daemon):
    for r in results:
        if r["workload"] == workload and r["daemon"] == daemon:
            return r
    return None


def ratios(results):
    lines = []
    for wl in sorted({r["workload"] for r in results if not r["workload"].startswith("rss")},
                     key=lambda w: (w.startswith("proc"), int(re.sub(r"\D", "", w) or 0))):
        hw = find(results, wl, "heartwatch")
        if not hw:
            continue
        for peer in ("watchdog", "monit"):
            p = find(results, wl, peer)
            if not p:
                continue
            parts = [f"RSS {p['rss_peak_kib'] / hw['rss_peak_kib']:.1f}×"]
            if hw["cpu_ms_per_s"] > 0:
                parts.append(f"CPU {p['cpu_ms_per_s'] / hw['cpu_ms_per_s']:.1f}×")
            for key, what in (("stale", "staleness latency"), ("death", "death latency")):
                if hw.get(key) and p.get(key):
                    parts.append(f"{what} {p[key]['median_ms'] / hw[key]['median_ms']:.1f}× (median)")
            if hw.get("first_verdict_ms") and p.get("first_verdict_ms"):
                parts.append(f"start-up {p['first_verdict_ms'] / hw['first_verdict_ms']:.1f}×")
            lines.append(f"- **{wl}**, {peer} ÷ heartwatch: " + ", ".join(parts))
    return "\n".join(lines)


def verdict(ok, text):
    return f"| {'met' if ok else '**missed**'} | {text} |"


def targets(results):
    out = ["| result | target at 1 000 rules (issue 8), measured |", "|---|---|"]
    hw = find(results, "hb1000", "heartwatch")
    hd = find(results, "hb1000", "heartwatch-default")
    mo = find(results, "hb1000", "monit")
    pr = find(results, "proc100", "heartwatch")
    if hw:
        peak = hw["rss_peak_kib"] / 1024
        out.append(verdict(peak <= 2, f"RSS ≤ 2 MiB: peak {peak:.2f} MiB"
                           + ("" if peak <= 2 else f", {peak / 2:.1f}× the target")))
    if hw and mo:
        limit = mo["cpu_ms_per_s"] / 10
        out.append(verdict(hw["cpu_ms_per_s"] <= limit,
                           f"CPU ≤ monit's ÷ 10: heartwatch {hw['cpu_ms_per_s']:.2f} ms/s, monit "
                           f"{mo['cpu_ms_per_s']:.2f} ms/s (heartwatch = monit ÷ {mo['cpu_ms_per_s'] / max(hw['cpu_ms_per_s'], 1e-9):.1f})"))
    for r in (hw, hd):
        if r and r.get("stale"):
            m = r["stale"]["max_ms"]
            out.append(verdict(m <= 100 and not r.get("stale_timeouts"),
                               f"staleness ≤ 100 ms past the deadline, {NAMES[r['daemon']]}: median "
                               f"{r['stale']['median_ms']:.0f} ms, max {m:.0f} ms"))
    if pr and pr.get("death"):
        m = pr["death"]["max_ms"]
        out.append(verdict(m <= 10, f"process death ≤ 10 ms (100 process rules): median "
                           f"{pr['death']['median_ms']:.2f} ms, max {m:.2f} ms"))
    h1, h10 = find(results, "hb1000", "heartwatch"), find(results, "hb10000", "heartwatch")
    if h1 and h10:
        cpu = (h10["cpu_ms_per_s"] / 10000) / (h1["cpu_ms_per_s"] / 1000)
        rss = (h10["rss_peak_kib"] - h1["rss_peak_kib"]) / 9000
        out.append(verdict(cpu <= 1.25, f"10 000 rules, no worse than linear: CPU per rule at 10 000 is "
                           f"{cpu:.2f}× that at 1 000; RSS grows {rss:.2f} KiB per added rule"))
    rows = []
    # Checks are the periodic stat's: with events a healthy heartbeat is
    # never looked at, and its rows measure beats instead.
    for wl, d, checks in (("hb1000", "heartwatch-periodic", 1000), ("hb1000", "heartwatch-periodic-default", 2000)):
        r = find(results, wl, d)
        if r:
            rows.append((f"{wl} {NAMES[d]}", checks, r))
    if rows:
        per = [r["cpu_ms_per_s"] * 1000 / c for _, c, r in rows]
        wak = [r["wakeups_per_s"] for _, _, r in rows]
        spread = max(per) / min(per)
        detail = "; ".join(f"{n}: {c} checks/s, {p:.2f} µs CPU per check, {w:.0f} wakeups/s"
                           for (n, c, _), p, w in zip(rows, per, wak))
        out.append(verdict(spread <= 1.5, f"cost follows the checks, not the wakeups (heartwatch on the periodic "
                           f"stat; with events there are no checks): CPU per check varies "
                           f"{spread:.2f}× while wakeups vary {max(wak) / max(min(wak), 1e-9):.0f}× ({detail})"))
    return "\n".join(out)


def targets14(results, fp):
    """The targets of issue 14, met or missed, from one run (bench.py's
    results and benches/footprint.py's)."""
    out = ["| result | target (issue 14), measured |", "|---|---|"]
    hw = find(results, "hb1000", "heartwatch")
    hd = find(results, "hb1000", "heartwatch-default")
    mo = find(results, "hb1000", "monit")
    wd = find(results, "hb1000", "watchdog")
    for r in (hw, hd):
        if r and r.get("stale"):
            med, mx = r["stale"]["median_ms"], r["stale"]["max_ms"]
            ok = med <= 10 and mx <= 50 and not r.get("stale_timeouts")
            out.append(verdict(ok, f"1 000 rules, staleness median ≤ 10 ms, max ≤ 50 ms, {NAMES[r['daemon']]}: "
                               f"median {med:.0f} ms, max {mx:.0f} ms"
                               + ("" if ok else f" (median {med / 10:.0f}× the target)")))
    for label in ("heartwatch-periodic", "heartwatch-periodic-default"):
        r = find(results, "hb1000", label)
        if r and r.get("stale"):
            out.append(f"| (no target) | {NAMES[label]}, kept for comparison: staleness median "
                       f"{ms(r['stale']['median_ms'])}, max {ms(r['stale']['max_ms'])}; "
                       f"CPU {r['cpu_ms_per_s']:.2f} ms/s; {r['wakeups_per_s']:.0f} wake-ups/s |")
    if hw and mo and wd:
        c = hw["cpu_ms_per_s"]
        ok = c <= mo["cpu_ms_per_s"] / 10 and c <= wd["cpu_ms_per_s"] / 100
        out.append(verdict(ok, f"1 000 rules, CPU ≤ monit ÷ 10 and ≤ watchdog ÷ 100: heartwatch {c:.2f} ms/s = "
                           f"monit ÷ {mo['cpu_ms_per_s'] / max(c, 1e-9):.1f}, watchdog ÷ "
                           f"{wd['cpu_ms_per_s'] / max(c, 1e-9):.1f}"))
    def split(r):
        if "rss_anon_kib" not in r:
            return ""
        return (f" (at the end: {mib(r['rss_anon_kib'])} MiB the process's own memory, "
                f"{mib(r['rss_file_kib'])} MiB the program's pages mapped from its file)")
    if hw:
        peak = hw["rss_peak_kib"] / 1024
        out.append(verdict(peak <= 2, f"1 000 rules, RSS ≤ 2 MiB: peak {peak:.2f} MiB"
                           + ("" if peak <= 2 else f", {peak / 2:.2f}× the target") + split(hw)))
    h10 = find(results, "hb10000", "heartwatch")
    if h10:
        peak = h10["rss_peak_kib"] / 1024
        out.append(verdict(peak <= 8, f"10 000 rules, RSS ≤ 8 MiB: peak {peak:.2f} MiB"
                           + ("" if peak <= 8 else f", {peak / 8:.2f}× the target") + split(h10)))
    rl = fp.get("reloads")
    if rl:
        out.append(verdict(abs(rl["growth_pct"]) <= 10,
                           f"{rl['rules']} rules, RSS within 10 % after {rl['reloads']} reloads: "
                           f"{mib(rl['rss_before_kib'])} → {mib(rl['rss_after_kib'])} MiB ({rl['growth_pct']:+.1f} %)"))
    st = fp.get("startup")
    if st:
        instr = f", {st['ready_instructions'] / 1e6:.0f} M instructions (callgrind)" if st.get("ready_instructions") else ""
        out.append(verdict(st["ready_wall_median_ms"] <= 100,
                           f"{st['rules']} rules, exec → READY=1 ≤ 100 ms: median {st['ready_wall_median_ms']:.0f} ms "
                           f"wall over {st['runs']} runs, {st['ready_cpu_median_ms']:.0f} ms CPU{instr}"))
    za = fp.get("zero_alloc_line")
    if za:
        m = re.search(r"(\d+) allocations", za)
        out.append(verdict(m is not None and m.group(1) == "0",
                           f"allocations in the steady state = 0 (tests/zero_alloc.rs, inotify path included): "
                           f"{m.group(1) if m else 'not counted'}"))
    idle = find(results, "idle1000", "heartwatch-idle")
    if idle:
        # The pings (WATCHDOG_USEC=10s: every 5 s) are the only wake-ups
        # it should have; no device is fed here.
        pings = 0.2
        ok = idle["wakeups_per_s"] <= pings * 1.5
        out.append(verdict(ok, f"idle host, 1 000 untouched rules: wakes only to ping systemd "
                               f"({pings:.1f}/s) and feed (no device here): "
                               f"{idle['wakeups_per_s']:.2f} wake-ups/s all threads, "
                               f"{idle['wakeups_main_per_s']:.2f} main thread, "
                               f"{idle['cpu_ms_per_s']:.3f} ms CPU per s"))
    if hw:
        beats = 1000 / 2.0
        out.append(verdict(hw["wakeups_per_s"] < beats,
                           f"wake-ups follow beats and deadlines, not rules: 1 000 rules, {beats:.0f} beats/s, "
                           f"{hw['wakeups_per_s']:.0f} wake-ups/s all threads ({hw['wakeups_main_per_s']:.0f} main)"))
    pd = find(results, "proc100", "heartwatch")
    if pd and pd.get("death"):
        out.append(verdict(pd["death"]["max_ms"] <= 10,
                           f"process death ≤ 10 ms (100 process rules): median {ms(pd['death']['median_ms'])}, "
                           f"max {ms(pd['death']['max_ms'])}"))
    if hw and h10 and hw["cpu_ms_per_s"] > 0:
        per = (h10["cpu_ms_per_s"] / 10000) / (hw["cpu_ms_per_s"] / 1000)
        out.append(verdict(per <= 1.0, f"CPU per rule at 10 000 ≤ at 1 000: {per:.2f}× "
                           f"({h10['cpu_ms_per_s']:.2f} vs {hw['cpu_ms_per_s']:.2f} ms/s)"))
    return "\n".join(out)


def instructions(fp):
    cg = fp.get("callgrind")
    if not cg:
        return "(not run: `python3 benches/footprint.py callgrind`)"
    rows = ["| run (1 000 heartbeat rules, MaxAge=2h) | instructions | seconds | checks | beats |",
            "|---|---|---|---|---|"]
    for name, what in (("idle", "idle: untouched, CheckInterval=1h"),
                       ("checks", "checks: untouched, CheckInterval=1s, on the periodic stat (no inotify watch)"),
                       ("beats", "beats: touched every 2 s, CheckInterval=1h")):
        r = cg[name]
        rows.append(f"| {what} | {r['instructions']:,} | {r['seconds']} | {r['statx_calls']:,} | {r['touches']:,} |")
    fmt = lambda v: "n/a" if v is None else f"{v:,}"
    rows.append("")
    rows.append(f"**{fmt(cg['per_idle_second'])} instructions per idle second, {fmt(cg['per_check'])} per check, "
                f"{fmt(cg['per_beat'])} per beat** (all threads summed; per check and per beat over the idle run's rate).")
    how = cg["checks"].get("checks_counted_by")
    if how == "rules x window":
        rows.append("Checks are the rules times the window: valgrind reads no symbols of the static binary to count "
                    "fstatat calls by, and this is the most the daemon can have made, so the figure per check is a "
                    "lower bound.")
    st = fp.get("startup")
    if st and st.get("ready_instructions"):
        rows.append(f"Start-up at {st['rules']} rules: {st['ready_instructions']:,} instructions from exec to READY=1.")
    return "\n".join(rows)


def experiments(results):
    rows = ["| variant (1 000 rules, CheckInterval=1s) | RSS MiB | locked (VmLck) MiB | CPU ms per s "
            "| resident KiB by mapping |", "|---|---|---|---|---|"]
    any_ = False
    for r in results:
        if not r["workload"].startswith("rss"):
            continue
        any_ = True
        smaps = ", ".join(f"{k} {v}" for k, v in sorted(r.get("smaps_kib", {}).items(), key=lambda kv: -kv[1]) if v)
        rows.append(f"| {r.get('variant', r['daemon'])} | {mib(r['rss_steady_kib'])} | {mib(r['locked_kib'])} "
                    f"| {r['cpu_ms_per_s']:.2f} | {smaps} |")
    return "\n".join(rows) if any_ else "(not run)"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--results", required=True)
    ap.add_argument("--zero-alloc", required=True)
    ap.add_argument("--command", default="benches/run")
    ap.add_argument("--footprint", default=None, help="benches/footprint.py's results (JSON)")
    ap.add_argument("--out", default="BENCHMARKS.md")
    args = ap.parse_args()
    data = json.load(open(args.results))
    results = data["results"]
    fp = {}
    if args.footprint and os.path.exists(args.footprint):
        fp = json.load(open(args.footprint))
    rl = fp.get("reloads")
    reload_line = (f"{rl['rules']} rules, RSS {rl['rss_before_kib']} KiB at start, "
                   f"{rl['rss_after_kib']} KiB after {rl['reloads']} SIGHUP reloads, samples (reloads, KiB) "
                   f"{rl['samples']}." if rl else "(not run).")
    za = open(args.zero_alloc).read() if os.path.exists(args.zero_alloc) else ""
    za_line = next((l for l in za.splitlines() if l.startswith("zero_alloc:")), "(zero_alloc did not run)")
    fp["zero_alloc_line"] = za_line
    cpu = sh("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2").strip()
    mem = sh("awk '/MemTotal/ {printf \"%.1f GiB\", $2/1048576}' /proc/meminfo")
    commit = sh("git rev-parse --short HEAD")
    version = sh("sed -n 's/^version = \"\\(.*\\)\"/\\1/p' Cargo.toml | head -1")
    debian = sh("cat /etc/debian_version")
    rustc = sh("rustc --version")
    os_name = sh(". /etc/os-release; echo $PRETTY_NAME")
    fs = sh("findmnt -no FSTYPE -T /tmp")
    wd_version = sh("dpkg-query -W -f='${Version}' watchdog")
    monit_version = sh("dpkg-query -W -f='${Version}' monit")
    analysis = open(os.path.join(HERE, "analysis.md")).read() if os.path.exists(os.path.join(HERE, "analysis.md")) else ""
    doc = f"""# Benchmarks: heartwatch, Debian's watchdog and monit

Generated by `{args.command}` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(os.path.getmtime(args.results)))}.
Every table comes from one run of that command; all three
daemons were measured in that run, one after another on each workload.

- machine: {cpu}, {os.cpu_count()} CPUs, {mem}, {os_name} (Debian {debian}), Linux {platform.release()}, {fs} under /tmp.
  **The machine was shared**: other jobs (QEMU virtual machines, builds) ran at the same time, so absolute CPU
  and latency figures carry noise; the 1-minute load average seen during each run is in `target/bench/results.json`.
- versions: heartwatch {version} (commit {commit}, `cargo build --release`),
  watchdog {wd_version}, monit {monit_version}, {rustc}.
- workloads: hbN = N heartbeat files, each with MaxAge {data['max_age_s']} s, touched every {data['touch_period_s']} s
  by the harness, plus one file missing at start (the canary, last in every configuration, whose first
  report is the "first verdict"); proc100 = 100 `sleep` processes named by pidfiles; mixed = hb1000's
  heartbeats beside 100 `[System]` rules (CheckInterval=1s, cycling through load, memory, swap, file
  handles, a filesystem and pressure, every threshold far from a healthy host) and 20 `[Command]` rules
  (`/bin/true` every 10 s), heartwatch only (`benches/bench.py`, `mixed_rules`). No watchdog device.

## Results

CPU is the daemon's run time over the steady-state window (all threads, from
`/proc/PID/task/*/schedstat`, in ms of CPU per second of wall time); the
`/proc/PID/stat` utime+stime over the same window is the next column (10 ms
ticks). Wakeups: `voluntary_ctxt_switches` deltas over the window, summed over
threads (main thread in parentheses): a thread switches out voluntarily each
time it blocks (poll, futex, nanosleep, a pipe), so each count is one sleep
and one wakeup. Staleness: time from a file's deadline (its last mtime +
MaxAge) to the daemon's reaction; death: from `kill(2)` to the reaction.
Reactions: heartwatch's `rule NAME: failing: ...` stderr line, timestamped
on arrival; watchdog's repair binary and monit's `exec` action, a bash script
that appends `$EPOCHREALTIME` to a file (this adds the ~2–4 ms of a bash start to the
peers' figures). In parentheses: the peer's figure ÷ heartwatch's
(CheckInterval=1s) on the same workload.

{table(results)}

Allocations per tick (`cargo test --release --test zero_alloc`, the real loop over 120 rules):
`{za_line}`

### Ratios, peer ÷ heartwatch (CheckInterval=1s)

{ratios(results)}

### Targets (issue 8)

{targets(results)}

### Targets (issue 14)

{targets14(results, fp)}

### Instructions (callgrind, `benches/footprint.py`)

Counted by `valgrind --tool=callgrind`, which repeats from run to run where
CPU time does not on a shared machine; each run is counted from READY=1 plus
2 s to the end of its window (`callgrind_control --zero`, `--dump`), with
`WATCHDOG_USEC` as the shipped unit sets it (pings every 5 s) and no watchdog
device. Reloads: {reload_line}

{instructions(fp)}

### Where heartwatch's memory goes (RSS experiments)

Same run, 1 000 heartbeat rules, only heartwatch, {8} s windows: the shipped binary under a wrapper, and
the same source linked against the shared glibc (`benches/run` builds it in `target/dynamic`).

{experiments(results)}

{analysis}
## Reproduce

```sh
{args.command}
```

as root on Debian 12 with a Rust toolchain; it installs `watchdog` and
`monit` from Debian when missing (without starting their services), builds
heartwatch, and takes about 17 minutes. Raw figures, every latency sample
and each daemon's logs: `target/bench/results.json`, `/tmp/heartwatch-bench/`.
Options: `python3 benches/bench.py --help`.
"""
    with open(args.out, "w") as f:
        f.write(doc)


if __name__ == "__main__":
    main()
