#!/usr/bin/env python3
"""heartwatch's footprint figures that bench.py does not take (issue 14).

  reloads   RSS at N rules (default 10 000) before and after R SIGHUP reloads
            (default 100), each waited for: RELOADING=1 ... READY=1 on a
            notification socket the bench reads (NOTIFY_SOCKET). The rules
            (MaxAge=1h) stay healthy throughout, so that the figure is what
            the reloads leave, not a change of the rules' state.
  startup   exec -> READY=1 at N rules (default 10 000): wall milliseconds
            over several runs (median), the CPU the process used by then
            (utime + stime at READY=1), and, under callgrind, the
            instructions executed up to READY=1.
  callgrind instructions per idle second, per check and per beat at N rules
            (default 1 000), under `valgrind --tool=callgrind`, all threads
            summed (the stat workers do the checks). Three runs of the same
            length, each counted from READY=1 (callgrind_control --zero) to
            the end of the window (callgrind_control --dump):
              idle:   files untouched, CheckInterval=1h: feeding, pinging,
                      the loop's own wake-ups;
              checks: files untouched, CheckInterval=1s, on the periodic
                      stat (no inotify watch can be added: a user namespace
                      whose max_inotify_watches is 0, as bench.py does for
                      its periodic rows; with events a healthy heartbeat is
                      never looked at): the idle run plus one check per rule
                      per second. The number of checks is what the dump
                      counts (calls of fstatat) where the dump names
                      functions; valgrind does not read the symbols of the
                      static binary, and then it is the window times the
                      rules: the most checks the daemon can have made, so
                      that the figure per check is a lower bound if the
                      daemon, slowed down ~50x by callgrind, fell behind;
              beats:  CheckInterval=1h, every file touched every 2 s by the
                      bench: the idle run plus what a beat costs heartwatch
                      (nothing until it looks, when it only stats; one
                      inotify event each where it watches the files).
            per idle second = idle / window; per check = (checks - idle) /
            checks; per beat = (beats - idle) / touches.

The notification socket is read and thrown away while a run counts: a
socket nobody reads fills after a few messages (net.unix.max_dgram_qlen),
and the daemon drops what it cannot send.

Writes JSON (--out) that benches/report.py reads (--footprint). Run as
root, like benches/run (mlockall, the runtime directory).
"""

import argparse
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
ROOT = "/tmp/heartwatch-footprint"
STARTED = []


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def kill_all():
    for p in reversed(STARTED):
        try:
            if p.poll() is None:
                p.kill()
                p.wait(timeout=10)
        except Exception:
            pass


def write(path, text):
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, 0o644)


def setup(name, n, interval=None, max_age="5s"):
    """A configuration of n heartbeat rules under ROOT/name; its root."""
    d = f"{ROOT}/{name}"
    for sub in ("conf/rules.d", "files", "run", "state"):
        os.makedirs(f"{d}/{sub}", exist_ok=True)
    for sub in ("conf", "conf/rules.d"):
        os.chmod(f"{d}/{sub}", 0o755)
    rules = f"{d}/conf/rules.d"
    for f in os.listdir(rules):
        os.unlink(f"{rules}/{f}")
    write(f"{d}/conf/heartwatch.conf",
          "[Watchdog]\nDevice=none\n[Daemon]\nStartupGrace=0s\n"
          f"RuntimeDirectory={d}/run\nStateDirectory={d}/state\n")
    every = f"CheckInterval={interval}\n" if interval else ""
    files = []
    for i in range(n):
        path = f"{d}/files/beat-{i:05d}"
        open(path, "a").close()
        os.utime(path)
        files.append(path)
        write(f"{rules}/beat-{i:05d}.rule", f"[Heartbeat]\nFile={path}\nMaxAge={max_age}\n{every}")
    return d, files


class Notify:
    """The socket NOTIFY_SOCKET names: what the daemon says, as it says it."""

    def __init__(self, d):
        self.path = f"{d}/notify"
        if os.path.exists(self.path):
            os.unlink(self.path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)

    def wait(self, word, timeout):
        """Waits for a message holding `word` (READY=1); its arrival time."""
        end = time.monotonic() + timeout
        while True:
            left = end - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no {word} within {timeout}s")
            self.sock.settimeout(left)
            msg = self.sock.recv(4096)
            if word.encode() in msg.split(b"\n"):
                return time.monotonic()

    def drain(self):
        """From now on, reads and throws away whatever the daemon says."""
        def run():
            try:
                self.sock.settimeout(None)
                while self.sock.recv(4096):
                    pass
            except OSError:
                pass  # closed
        threading.Thread(target=run, daemon=True).start()

    def close(self):
        try:
            self.sock.shutdown(socket.SHUT_RDWR)  # wakes drain's thread
        except OSError:
            pass
        self.sock.close()
        os.unlink(self.path)


def launch(d, notify, wrapper=()):
    env = dict(os.environ, NOTIFY_SOCKET=notify.path)
    env.pop("JOURNAL_STREAM", None)
    # As the shipped unit (WatchdogSec=10s): the idle runs ping systemd.
    env["WATCHDOG_USEC"] = "10000000"
    env.pop("WATCHDOG_PID", None)
    p = subprocess.Popen(list(wrapper) + [BINARY, "run", "--config", f"{d}/conf"],
                         env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=open(f"{d}/stderr.log", "w"))
    STARTED.append(p)
    return p


def stop(p):
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(timeout=60)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return None


def cpu_ms(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * 1000 / os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------- reloads


def reloads(args):
    # MaxAge=1h, as in tests/footprint.rs: the rules stay healthy through
    # the run. With the default 5 s the untouched files go stale during the
    # first reloads, and a failing rule's status (its cause and ladder
    # texts, a longer line in the status record) is what grew then, about
    # 25 % at 10 000 rules with no reload at all, not memory reloads left.
    d, _ = setup(f"reload{args.rules}", args.rules, max_age="1h")
    notify = Notify(d)
    p = launch(d, notify)
    try:
        notify.wait("READY=1", 300)
        time.sleep(2)
        before = rss_kib(p.pid)
        log(f"reloads: {args.rules} rules, RSS {before} KiB at start")
        samples = []
        for i in range(args.reloads):
            p.send_signal(signal.SIGHUP)
            notify.wait("READY=1", 300)
            if (i + 1) % 10 == 0 or i < 3:
                samples.append((i + 1, rss_kib(p.pid)))
                log(f"reloads: after {i + 1}: RSS {samples[-1][1]} KiB")
        time.sleep(2)
        after = rss_kib(p.pid)
    finally:
        stop(p)
        notify.close()
    growth = (after - before) / before * 100
    log(f"reloads: RSS {before} -> {after} KiB after {args.reloads} reloads ({growth:+.1f} %)")
    return {"rules": args.rules, "reloads": args.reloads, "rss_before_kib": before,
            "rss_after_kib": after, "growth_pct": round(growth, 1), "samples": samples}


# ---------------------------------------------------------------- startup


def callgrind_argv(out):
    return ["valgrind", "--tool=callgrind", "--quiet", f"--callgrind-out-file={out}"]


def dump_total(path):
    """The instruction total of one callgrind dump."""
    with open(path) as f:
        for line in f:
            if line.startswith(("summary:", "totals:")):
                return int(line.split()[1])
    raise RuntimeError(f"{path}: no totals")


def statx_calls(path):
    """How many times a dump's code called glibc's fstatat, which stat(2)
    comes to (one per heartbeat check on the stat path; the configuration
    is read with statx, not counted), from the call lines of every caller."""
    names = {}
    calls = 0
    cfn = None
    with open(path) as f:
        for line in f:
            m = re.match(r"c?fn=\((\d+)\)(?: (.*))?", line)
            if m:
                if m.group(2):
                    names[m.group(1)] = m.group(2).strip()
                if line.startswith("cfn="):
                    cfn = names.get(m.group(1), "")
                continue
            if line.startswith("calls=") and cfn is not None:
                if re.fullmatch(r"(__GI_)?(__)?fstatat(64)?(_time64)?", cfn):
                    calls += int(line.split()[0].split("=")[1])
                cfn = None
    return calls


def latest_dump(prefix):
    parts = [f for f in os.listdir(os.path.dirname(prefix)) if f.startswith(os.path.basename(prefix))]
    parts.sort(key=lambda f: (len(f), f))
    return f"{os.path.dirname(prefix)}/{parts[-1]}"


def callgrind_control(flag, pid):
    subprocess.run(["callgrind_control", flag, str(pid)], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=300)


def startup(args):
    d, _ = setup(f"start{args.rules}", args.rules)
    wall, cpu = [], []
    for i in range(args.runs):
        notify = Notify(d)
        t0 = time.monotonic()
        p = launch(d, notify)
        try:
            t1 = notify.wait("READY=1", 300)
            cpu.append(cpu_ms(p.pid))
            wall.append((t1 - t0) * 1000)
        finally:
            stop(p)
            notify.close()
    out = {"rules": args.rules, "runs": args.runs,
           "ready_wall_ms": [round(x, 1) for x in wall],
           "ready_wall_median_ms": round(statistics.median(wall), 1),
           "ready_cpu_ms": [round(x, 1) for x in cpu],
           "ready_cpu_median_ms": round(statistics.median(cpu), 1)}
    log(f"startup: exec -> READY=1 at {args.rules} rules: median {out['ready_wall_median_ms']} ms wall, "
        f"{out['ready_cpu_median_ms']} ms CPU, over {args.runs} runs (wall {out['ready_wall_ms']})")
    if args.no_callgrind:
        return out
    # Instructions up to READY=1: a dump is asked for as READY=1 arrives.
    prefix = f"{d}/callgrind.start"
    for f in os.listdir(d):
        if f.startswith("callgrind."):
            os.unlink(f"{d}/{f}")
    notify = Notify(d)
    p = launch(d, notify, callgrind_argv(prefix + ".%p"))
    try:
        notify.wait("READY=1", 900)
        callgrind_control("--dump", p.pid)
        out["ready_instructions"] = dump_total(f"{prefix}.{p.pid}.1")
    finally:
        stop(p)
        notify.close()
    log(f"startup: {out['ready_instructions']:,} instructions to READY=1 (callgrind)")
    return out


# ---------------------------------------------------------------- callgrind


def toucher(files, stop_event, counter):
    while not stop_event.is_set():
        for f in files:
            os.utime(f)
        counter[0] += len(files)
        stop_event.wait(2.0)


# Runs a command where no inotify watch can be added (bench.py's).
from bench import NO_INOTIFY  # noqa: E402


def counted_run(name, n, interval, window, touch, periodic=False):
    d, files = setup(f"cg-{name}", n, interval=interval, max_age="2h")
    prefix = f"{d}/callgrind.out"
    for f in os.listdir(d):
        if f.startswith("callgrind."):
            os.unlink(f"{d}/{f}")
    notify = Notify(d)
    p = launch(d, notify, (NO_INOTIFY if periodic else []) + callgrind_argv(prefix + ".%p"))
    stop_event, counter = threading.Event(), [0]
    try:
        notify.wait("READY=1", 900)
        notify.drain()
        time.sleep(2)  # the first look at every rule is start-up, not steady state
        callgrind_control("--zero", p.pid)
        t0 = time.monotonic()
        if touch:
            t = threading.Thread(target=toucher, args=(files, stop_event, counter), daemon=True)
            t.start()
        time.sleep(window)
        callgrind_control("--dump", p.pid)
        elapsed = time.monotonic() - t0
        stop_event.set()
        dump = latest_dump(f"{prefix}.{p.pid}")
        total = dump_total(dump)
        checks = statx_calls(dump)
        said = open(f"{d}/stderr.log").read()
        if periodic and "on the periodic stat" not in said:
            raise RuntimeError(f"callgrind {name}: heartwatch did not fall back to the periodic stat")
    finally:
        stop_event.set()
        stop(p)
        notify.close()
    r = {"instructions": total, "seconds": round(elapsed, 2), "statx_calls": checks,
         "touches": counter[0]}
    if periodic:
        r["checks_counted_by"] = "fstatat calls in the dump" if checks else "rules x window"
        if not checks:
            r["statx_calls"] = round(n * elapsed / 1.0)
    log(f"callgrind {name}: {json.dumps(r)}")
    return r


def instructions(args):
    idle = counted_run("idle", args.rules, "1h", args.window, False)
    checks = counted_run("checks", args.rules, "1s", args.window, False, periodic=True)
    beats = counted_run("beats", args.rules, "1h", args.window, True)
    per_second = idle["instructions"] / idle["seconds"]

    def over_idle(run):
        return run["instructions"] - per_second * run["seconds"]

    extra_checks = checks["statx_calls"] - idle["statx_calls"]
    out = {"rules": args.rules, "window_s": args.window, "threads": "all, summed",
           "idle": idle, "checks": checks, "beats": beats,
           "per_idle_second": round(per_second),
           "per_check": round(over_idle(checks) / extra_checks) if extra_checks > 0 else None,
           "per_beat": round(over_idle(beats) / beats["touches"]) if beats["touches"] else None}
    log(f"callgrind at {args.rules} rules: {out['per_idle_second']:,} instructions per idle second, "
        f"{out['per_check']} per check, {out['per_beat']} per beat")
    return out


def main():
    global BINARY
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("what", nargs="*", help="reloads, startup, callgrind (default: all three)")
    ap.add_argument("--binary", default=f"{REPO}/target/release/heartwatch")
    ap.add_argument("--out", default=f"{REPO}/target/bench/footprint.json")
    ap.add_argument("--reload-rules", type=int, default=10000)
    ap.add_argument("--reloads", type=int, default=100)
    ap.add_argument("--start-rules", type=int, default=10000)
    ap.add_argument("--runs", type=int, default=7, help="startup runs (median)")
    ap.add_argument("--no-callgrind", action="store_true", help="startup: no callgrind run")
    ap.add_argument("--cg-rules", type=int, default=1000)
    ap.add_argument("--window", type=float, default=30.0, help="callgrind: seconds per run")
    args = ap.parse_args()
    kinds = ["reloads", "startup", "callgrind"]
    if not args.what:
        args.what = kinds
    if any(w not in kinds for w in args.what):
        ap.error(f"what: choose from {', '.join(kinds)}")
    BINARY = args.binary

    def on_signal(signum, frame):
        kill_all()
        sys.exit(128 + signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    os.makedirs(ROOT, exist_ok=True)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    results = {}
    if os.path.exists(args.out):
        with open(args.out) as f:
            results = json.load(f)
    try:
        if "reloads" in args.what:
            args.rules = args.reload_rules
            results["reloads"] = reloads(args)
        if "startup" in args.what:
            args.rules = args.start_rules
            results["startup"] = startup(args)
        if "callgrind" in args.what:
            args.rules = args.cg_rules
            results["callgrind"] = instructions(args)
    finally:
        kill_all()
        with open(args.out, "w") as f:
            json.dump(results, f, indent=1)
        log(f"results in {args.out}")


if __name__ == "__main__":
    main()
