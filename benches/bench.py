#!/usr/bin/env python3
"""heartwatch side by side with Debian's `watchdog` and `monit`.

Runs the three daemons one after another on the same generated workloads
(heartbeat files, processes), with no watchdog device, and measures for each
daemon and workload: peak and steady RSS, CPU over a steady-state window,
wakeups, staleness and process-death detection latency, and the time from
start to the first verdict. Writes results.json and the tables that
benches/report.py turns into BENCHMARKS.md. `benches/run` is the one command
that installs the peers, builds heartwatch and runs this.

Safety: Debian's watchdog reboots the host on a failed check unless told not
to. Here it runs with `-q` (no action), a repair binary that only records a
timestamp and exits 0, `repair-maximum = 0` (a repair that reports success
is never followed by a reboot), and inside a user, PID and mount namespace,
where reboot(2) can only end the namespace, kill(-1) only reaches the
namespace and no host filesystem can be unmounted or remounted. monit's
actions are `exec` of the same recorder; heartwatch rules have no
[Escalate] section, so a failing rule is only logged.
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
ROOT = "/tmp/heartwatch-bench"
MAX_AGE = 5  # seconds, the same for all three daemons
TOUCH_PERIOD = 2.0  # every live heartbeat file is touched this often
CLK_TCK = os.sysconf("SC_CLK_TCK")
# Runs a command where no inotify watch can be added (a user namespace of
# its own whose max_inotify_watches is 0): heartwatch falls back to the
# periodic stat, as it does on NFS or FUSE. The PID stays the command's.
NO_INOTIFY = ["unshare", "--user", "--map-root-user", "sh", "-c",
              'echo 0 > /proc/sys/user/max_inotify_watches && exec "$@"', "sh"]

# Every process this harness starts, so that every one of them is stopped,
# even when the harness fails.
STARTED = []


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def kill_all():
    for p in reversed(STARTED):
        try:
            if p.poll() is None:
                p.kill()
                p.wait(timeout=5)
        except Exception:
            pass


def popen(argv, **kw):
    p = subprocess.Popen(argv, **kw)
    STARTED.append(p)
    return p


def write(path, text, mode=0o644):
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, mode)


# ---------------------------------------------------------------- /proc


def read_status(pid):
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            out[k] = v.strip()
    return out


def kib(status, key):
    return int(status.get(key, "0 kB").split()[0])


def snapshot(pid):
    """CPU and context switches of every thread of `pid`, now."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])  # utime + stime
    run_ns = 0
    run_main = 0
    vol = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                ns = int(f.read().split()[0])
            run_ns += ns
            if int(tid) == pid:
                run_main = ns
            st = read_status(f"{pid}/task/{tid}")
            vol += int(st["voluntary_ctxt_switches"])
        except (FileNotFoundError, ProcessLookupError):
            pass
    main = int(read_status(pid)["voluntary_ctxt_switches"])
    return {"t": time.monotonic(), "ticks": ticks, "run_ns": run_ns, "run_main": run_main,
            "vol": vol, "vol_main": main}


def smaps_breakdown(pid):
    """Resident KiB by mapping, grouped: the binary, libc, ld.so, heap,
    thread stacks and other anonymous memory, stacks of the main thread."""
    groups = {}
    name = None
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            parts = line.split()
            if re.match(r"^[0-9a-f]+-[0-9a-f]+ ", line):
                path = parts[5] if len(parts) > 5 else ""
                if path.endswith("/heartwatch"):
                    name = "heartwatch binary"
                elif "libc.so" in path:
                    name = "libc"
                elif "ld-linux" in path:
                    name = "ld.so"
                elif path.startswith("/"):
                    name = "other files"
                elif path == "":
                    name = "anonymous (thread stacks, malloc arenas, mmaps)"
                else:
                    name = path
            elif parts and parts[0] == "Rss:":
                groups[name] = groups.get(name, 0) + int(parts[1])
    return groups


# ------------------------------------------------------------ workloads


class Workload:
    """Heartbeat files (and processes) shared by the daemons of one run."""

    def __init__(self, name, beats, procs):
        self.name = name
        self.dir = f"{ROOT}/{name}"
        self.beats = [f"beat-{i:05d}" for i in range(beats)]
        self.procs = [f"proc-{i:03d}" for i in range(procs)]
        self.canary = "zz-canary"  # a heartbeat file missing at start
        self.live = set()
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.children = {}
        # Rules of other kinds, by name: their text (heartwatch only).
        self.extra_rules = {}
        # False: an idle host, whose heartbeat files are never touched.
        self.touching = True
        # MaxAge= of heartwatch's heartbeat rules, in seconds.
        self.max_age = MAX_AGE
        os.makedirs(f"{self.dir}/files", exist_ok=True)

    def path(self, name):
        return f"{self.dir}/files/{name}"

    def prepare(self):
        """Touches every heartbeat file, removes the canary, starts the
        processes of the process rules."""
        for b in self.beats:
            open(self.path(b), "a").close()
        self.live = set(self.beats)
        if os.path.exists(self.path(self.canary)):
            os.unlink(self.path(self.canary))
        for p in self.procs:
            if p not in self.children or self.children[p].poll() is not None:
                child = popen(["sleep", "100000"])
                self.children[p] = child
                write(self.path(p) + ".pid", f"{child.pid}\n")

    def toucher(self):
        while self.touching and not self.stop.is_set():
            with self.lock:
                for name in list(self.live):
                    try:
                        os.utime(self.path(name))
                    except FileNotFoundError:
                        open(self.path(name), "a").close()
            self.stop.wait(TOUCH_PERIOD)

    def start_touching(self):
        self.stop.clear()
        self.thread = threading.Thread(target=self.toucher, daemon=True)
        self.thread.start()

    def stop_touching(self):
        self.stop.set()
        self.thread.join(timeout=10)

    def revive_canary(self):
        with self.lock:
            open(self.path(self.canary), "a").close()
            self.live.add(self.canary)

    def cleanup(self):
        for child in self.children.values():
            if child.poll() is None:
                child.kill()
                child.wait(timeout=5)
        self.children = {}


def mixed_rules(systems=100, commands=20, interval="1s"):
    """The [System] and [Command] rules of the "mixed" workload, by rule
    name, written against the rule syntax of issue 13 (heartwatch.rules(5)).
    Every threshold is far from where a healthy host is, so that no rule
    fails: the workload measures what watching costs, not what failing does.
    The system rules cycle through every measure that exists on any Linux
    host (no temperature sensor: many machines have none)."""
    measures = [
        "LoadAverage=1min\nMaxLoad=10000\n",
        "LoadAverage=5min\nMaxLoad=1000\nPerCPU=yes\n",
        "MinMemoryAvailable=1%\n",
        "MaxSwapUsed=99%\n",
        "MaxFileHandles=99%\n",
        "Filesystem=/\nMinFreeSpace=1M\nMinFreeInodes=1\n",
        "Pressure=cpu\nMaxPressure=99%\n",
        "Pressure=memory\nPressureLine=full\nPressureAverage=10s\nMaxPressure=99%\n",
        "Pressure=io\nPressureAverage=300s\nMaxPressure=99%\n",
    ]
    rules = {}
    for i in range(systems):
        rules[f"system-{i:03d}"] = (
            f"[System]\nCheckInterval={interval}\nFor=1min\n{measures[i % len(measures)]}"
        )
    for i in range(commands):
        rules[f"command-{i:03d}"] = "[Command]\nRun=/bin/true\nInterval=10s\nTimeout=2s\n"
    return rules


# --------------------------------------------------------------- daemons


class Daemon:
    """A daemon under test. Subclasses write its configuration, start it
    and turn its reactions into events (rule name, kind, arrival time)."""

    label = ""

    def __init__(self, wl):
        self.wl = wl
        self.dir = f"{wl.dir}/{self.label}"
        os.makedirs(self.dir, exist_ok=True)
        self.events = []
        self.events_lock = threading.Lock()
        self.reactions = f"{self.dir}/reactions.log"
        self.proc = None
        self.pid = None
        self.spawned_at = None
        self.ready_at = None
        self.closed = threading.Event()

    def event(self, name, kind, ts):
        with self.events_lock:
            self.events.append((name, kind, ts))

    def first_event(self, name, kind, after):
        with self.events_lock:
            for n, k, ts in self.events:
                if n == name and k == kind and ts >= after:
                    return ts
        return None

    def recorder(self, tag):
        path = f"{self.dir}/record"
        write(
            path,
            "#!/bin/bash\n"
            "# The benchmark's stand-in for a repair: records when it ran.\n"
            f'echo "$EPOCHREALTIME {tag} $*" >> {self.reactions}\n'
            "exit 0\n",
            0o755,
        )
        return path

    def follow_reactions(self):
        """Tails the recorder's file; the timestamps are the recorder's own."""
        pos = 0
        while not self.closed.is_set():
            try:
                with open(self.reactions) as f:
                    f.seek(pos)
                    chunk = f.read()
                    # Only whole lines.
                    cut = chunk.rfind("\n") + 1
                    pos += len(chunk[:cut].encode())
                    for line in chunk[:cut].splitlines():
                        self.parse_reaction(line.split())
            except FileNotFoundError:
                pass
            self.closed.wait(0.02)

    def start(self):
        open(self.reactions, "w").close()
        self.write_config()
        self.spawned_at = time.time()
        self.launch()
        threading.Thread(target=self.follow_reactions, daemon=True).start()

    def stop_daemon(self):
        self.closed.set()
        if self.pid:
            try:
                os.kill(self.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            if self.pid:
                try:
                    os.kill(self.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            self.proc.kill()
            self.proc.wait(timeout=10)


class Heartwatch(Daemon):
    def __init__(self, wl, interval, binary, env=None, label="heartwatch", wrapper=(), notify=False):
        self.label = label
        super().__init__(wl)
        self.interval = interval
        self.binary = binary
        self.env = env or {}
        self.wrapper = list(wrapper)
        # True: a NOTIFY_SOCKET that the harness reads and throws away, so
        # that heartwatch sends READY=1 and its watchdog pings as under
        # systemd.
        self.notify = notify
        self.notify_sock = None

    def write_config(self):
        conf = f"{self.dir}/conf"
        rules = f"{conf}/rules.d"
        if os.path.isdir(rules):
            for f in os.listdir(rules):
                os.unlink(f"{rules}/{f}")
        os.makedirs(rules, exist_ok=True)
        os.makedirs(f"{self.dir}/run", exist_ok=True)
        os.makedirs(f"{self.dir}/state", exist_ok=True)
        for d in (conf, rules):
            os.chmod(d, 0o755)
        write(
            f"{conf}/heartwatch.conf",
            "[Watchdog]\nDevice=none\n[Daemon]\nStartupGrace=0s\n"
            f"RuntimeDirectory={self.dir}/run\nStateDirectory={self.dir}/state\n",
        )
        interval = f"CheckInterval={self.interval}\n" if self.interval else ""
        for b in self.wl.beats + [self.wl.canary]:
            write(
                f"{rules}/{b}.rule",
                f"[Heartbeat]\nFile={self.wl.path(b)}\nMaxAge={self.wl.max_age}s\n{interval}",
            )
        for p in self.wl.procs:
            write(f"{rules}/{p}.rule", f"[Process]\nPidFile={self.wl.path(p)}.pid\n")
        for name, text in self.wl.extra_rules.items():
            write(f"{rules}/{name}.rule", text)

    def refused_config(self):
        """What `heartwatch check` says against this configuration, or None
        when it passes (a binary without the rule kinds refuses it)."""
        self.write_config()
        out = subprocess.run([self.binary, "check", "--config", f"{self.dir}/conf"],
                             stdin=subprocess.DEVNULL, capture_output=True, text=True)
        if out.returncode == 0:
            return None
        return (out.stdout + out.stderr).strip().splitlines()[-3:]

    def launch(self):
        env = dict(os.environ)
        env.pop("JOURNAL_STREAM", None)
        env.update(self.env)
        if self.notify:
            path = f"{self.dir}/notify"
            if os.path.exists(path):
                os.unlink(path)
            self.notify_sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            self.notify_sock.bind(path)
            env["NOTIFY_SOCKET"] = path
            threading.Thread(target=self.drain_notify, args=(self.notify_sock,), daemon=True).start()
        self.proc = popen(
            self.wrapper + [self.binary, "run", "--config", f"{self.dir}/conf"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=env,
        )
        self.pid = self.proc.pid
        threading.Thread(target=self.read_stderr, daemon=True).start()

    def read_stderr(self):
        rule = re.compile(r"rule (\S+): failing: (stale|dead|missing)")
        with open(f"{self.dir}/stderr.log", "w") as out:
            for raw in self.proc.stderr:
                ts = time.time()  # on arrival
                line = raw.decode(errors="replace")
                out.write(f"{ts:.6f} {line}")
                out.flush()
                m = rule.search(line)
                if m:
                    self.event(m.group(1), m.group(2), ts)
                elif "ready:" in line and self.ready_at is None:
                    self.ready_at = ts

    def parse_reaction(self, words):
        pass

    def drain_notify(self, sock):
        try:
            while sock.recv(4096):
                pass
        except OSError:
            pass  # closed by stop_daemon

    def stop_daemon(self):
        super().stop_daemon()
        if self.notify_sock:
            try:
                self.notify_sock.shutdown(socket.SHUT_RDWR)  # wakes drain_notify
            except OSError:
                pass
            self.notify_sock.close()
            os.unlink(f"{self.dir}/notify")
            self.notify_sock = None

    def said(self, text):
        """Whether heartwatch's stderr (kept in stderr.log) holds `text`."""
        try:
            with open(f"{self.dir}/stderr.log") as f:
                return text in f.read()
        except FileNotFoundError:
            return False


class Watchdog(Daemon):
    label = "watchdog"

    def write_config(self):
        os.makedirs(f"{self.dir}/log", exist_ok=True)
        os.makedirs(f"{self.dir}/test.d", exist_ok=True)
        lines = [
            "# Debian watchdog 5.16, configured for the benchmark: no device,",
            "# no reboot, a repair binary that only records when it ran.",
            "interval = 1",
            "retry-timeout = 0",  # act on the first failed check, as the others do
            f"repair-binary = {self.recorder('wd')}",
            "repair-timeout = 5",
            "repair-maximum = 0",
            "admin =",
            "realtime = yes",  # Debian's default /etc/watchdog.conf
            "priority = 1",
            f"log-dir = {self.dir}/log",
            f"test-directory = {self.dir}/test.d",
        ]
        for b in self.wl.beats + [self.wl.canary]:
            lines += [f"file = {self.wl.path(b)}", f"change = {MAX_AGE}"]
        write(f"{self.dir}/watchdog.conf", "\n".join(lines) + "\n")

    def launch(self):
        # New user, PID and mount namespaces; a tmpfs on /run keeps its
        # pidfile off the host.
        inner = f"mount -t tmpfs tmpfs /run && exec watchdog -F -q -c {self.dir}/watchdog.conf"
        self.proc = popen(
            ["unshare", "--user", "--map-root-user", "--pid", "--fork", "--mount",
             "--mount-proc", "--kill-child", "--", "sh", "-c", inner],
            stdin=subprocess.DEVNULL,
            stdout=open(f"{self.dir}/stdout.log", "w"),
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and self.pid is None:
            try:
                with open(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children") as f:
                    kids = f.read().split()
                if kids:
                    self.pid = int(kids[0])
            except FileNotFoundError:
                pass
            time.sleep(0.002)
        if self.pid is None:
            raise RuntimeError("watchdog did not start in its namespace")

    def parse_reaction(self, words):
        # "<ts> wd <errno> <path>": 250 is "not changed in time", 2 ENOENT.
        if len(words) >= 4:
            kind = {"250": "stale", "2": "missing"}.get(words[2], "other")
            self.event(os.path.basename(words[3]), kind, float(words[0]))


class Monit(Daemon):
    label = "monit"

    def write_config(self):
        rec = self.recorder("monit")
        lines = [
            "set daemon 1",
            f"set log {self.dir}/monit.log",
            f"set pidfile {self.dir}/monit.pid",
            f"set idfile {self.dir}/monit.id",
            f"set statefile {self.dir}/monit.state",
        ]
        for b in self.wl.beats + [self.wl.canary]:
            lines += [
                f"check file {b} with path {self.wl.path(b)}",
                f'  if does not exist then exec "{rec} {b} missing"',
                f'  if mtime > {MAX_AGE} seconds then exec "{rec} {b} stale"',
            ]
        for p in self.wl.procs:
            lines += [
                f"check process {p} with pidfile {self.wl.path(p)}.pid",
                f'  if does not exist then exec "{rec} {p} dead"',
            ]
        write(f"{self.dir}/monitrc", "\n".join(lines) + "\n", 0o600)

    def launch(self):
        for f in ("monit.state", "monit.pid"):
            if os.path.exists(f"{self.dir}/{f}"):
                os.unlink(f"{self.dir}/{f}")
        self.proc = popen(
            ["monit", "-I", "-c", f"{self.dir}/monitrc"],
            stdin=subprocess.DEVNULL,
            stdout=open(f"{self.dir}/stdout.log", "w"),
            stderr=subprocess.STDOUT,
        )
        self.pid = self.proc.pid

    def parse_reaction(self, words):
        # "<ts> monit <name> <kind>"
        if len(words) >= 4:
            self.event(words[2], words[3], float(words[0]))


# ---------------------------------------------------------- measurement


def wait_for(pred, timeout, step=0.005):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v is not None:
            return v
        time.sleep(step)
    return None


def steady_window(d, seconds):
    """CPU, wakeups and RSS over `seconds` of steady state."""
    a = snapshot(d.pid)
    rss = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        rss.append(kib(read_status(d.pid), "VmRSS"))
        time.sleep(min(1.0, max(0.0, end - time.monotonic())))
    b = snapshot(d.pid)
    st = read_status(d.pid)
    secs = b["t"] - a["t"]
    return {
        "window_s": round(secs, 3),
        "cpu_s_stat": (b["ticks"] - a["ticks"]) / CLK_TCK,
        "cpu_s": (b["run_ns"] - a["run_ns"]) / 1e9,
        "cpu_ms_per_s": (b["run_ns"] - a["run_ns"]) / 1e6 / secs,
        "cpu_main_ms_per_s": (b["run_main"] - a["run_main"]) / 1e6 / secs,
        "wakeups_per_s": (b["vol"] - a["vol"]) / secs,
        "wakeups_main_per_s": (b["vol_main"] - a["vol_main"]) / secs,
        "rss_steady_kib": round(statistics.mean(rss)),
        "threads": int(st["Threads"]),
        "locked_kib": kib(st, "VmLck"),
    }


def staleness(d, wl, rounds, per_round, stagger, bound):
    """Stops touching a few files at staggered moments and times the
    daemon's reaction against each file's deadline (last mtime + MaxAge).
    A reaction later than `bound` seconds past the deadline is a timeout."""
    samples = []
    timeouts = 0
    pool = [b for b in wl.beats]
    k = 0
    for r in range(rounds):
        chosen = []
        for _ in range(min(per_round, len(pool))):
            chosen.append(pool[k % len(pool)])
            k += 1
        stops = {}
        t0 = time.monotonic()
        for i, name in enumerate(chosen):
            delay = t0 + i * stagger - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            with wl.lock:
                wl.live.discard(name)
                os.utime(wl.path(name))
                mtime = os.stat(wl.path(name)).st_mtime_ns / 1e9
            stops[name] = mtime
        for name, mtime in stops.items():
            deadline = mtime + MAX_AGE
            ts = wait_for(lambda: d.first_event(name, "stale", mtime),
                          max(0.0, deadline + bound - time.time()))
            if ts is None:
                timeouts += 1
            else:
                samples.append(ts - deadline)
        with wl.lock:
            for name in chosen:
                os.utime(wl.path(name))
                wl.live.add(name)
        time.sleep(2)  # let every daemon see the files fresh again
    return samples, timeouts


def deaths(d, wl, count, stagger):
    """Kills watched processes at staggered moments; times the reaction."""
    samples = []
    timeouts = 0
    for name in wl.procs[:count]:
        child = wl.children[name]
        t = time.time()
        child.kill()
        child.wait(timeout=5)  # reaped at once: no zombie to mislead a peer
        ts = wait_for(lambda: d.first_event(name, "dead", t), 5)
        if ts is None:
            timeouts += 1
        else:
            samples.append(ts - t)
        time.sleep(stagger)
    return samples, timeouts


def summary(samples):
    if not samples:
        return None
    return {
        "n": len(samples),
        "median_ms": statistics.median(samples) * 1000,
        "max_ms": max(samples) * 1000,
        "min_ms": min(samples) * 1000,
    }


def run_one(d, wl, args, window, stale=True, kills=0, breakdown=False):
    log(f"{wl.name}: {d.label} starting")
    wl.prepare()
    wl.start_touching()
    result = {"workload": wl.name, "daemon": d.label}
    try:
        d.start()
        ts = wait_for(lambda: d.first_event(wl.canary, "missing", 0), args.first_verdict_bound, 0.002)
        result["first_verdict_ms"] = (ts - d.spawned_at) * 1000 if ts else None
        result["first_verdict_bound_s"] = args.first_verdict_bound
        if d.ready_at:
            result["ready_ms"] = (d.ready_at - d.spawned_at) * 1000
        wl.revive_canary()
        time.sleep(args.warmup)
        if d.proc.poll() is not None:
            raise RuntimeError(f"{d.label} exited early ({d.proc.returncode})")
        result.update(steady_window(d, window))
        if breakdown:
            result["smaps_kib"] = smaps_breakdown(d.pid)
        if stale:
            # A daemon that needs long for one pass over its rules (watchdog
            # forks for every file) gets as long to react: 2.5 passes.
            bound = 6.0
            if result["first_verdict_ms"]:
                bound = min(90.0, max(bound, 2.5 * result["first_verdict_ms"] / 1000 + 2))
            rounds = args.rounds if len(wl.beats) < 10000 else 1
            s, t = staleness(d, wl, rounds, args.per_round, args.stagger, bound)
            result["stale_bound_s"] = bound
            result["stale"] = summary(s)
            result["stale_timeouts"] = t
            result["stale_samples_ms"] = [round(x * 1000, 1) for x in s]
        if kills:
            s, t = deaths(d, wl, kills, 0.237)
            result["death"] = summary(s)
            result["death_timeouts"] = t
            result["death_samples_ms"] = [round(x * 1000, 2) for x in s]
        st = read_status(d.pid)
        result["rss_peak_kib"] = kib(st, "VmHWM")
        result["rss_end_kib"] = kib(st, "VmRSS")
        # What the process owns (heap, stacks) and the program's own pages.
        result["rss_anon_kib"] = kib(st, "RssAnon")
        result["rss_file_kib"] = kib(st, "RssFile")
        result["loadavg"] = open("/proc/loadavg").read().split()[0]
    finally:
        d.stop_daemon()
        wl.stop_touching()
    log(f"{wl.name}: {d.label}: {json.dumps({k: v for k, v in result.items() if not k.endswith('samples_ms') and k != 'smaps_kib'})}")
    return result


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--binary", default=f"{REPO}/target/release/heartwatch")
    ap.add_argument("--out", default=f"{REPO}/target/bench/results.json")
    ap.add_argument("--sizes", default="10,1000,10000")
    ap.add_argument("--window", type=float, default=20.0)
    ap.add_argument("--window-large", type=float, default=10.0, help="window at 10 000 rules")
    ap.add_argument("--warmup", type=float, default=3.0)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--per-round", type=int, default=12)
    ap.add_argument("--stagger", type=float, default=0.173)
    ap.add_argument("--first-verdict-bound", type=float, default=120.0,
                    help="seconds to wait for a daemon's first pass over its rules")
    ap.add_argument("--procs", type=int, default=100)
    ap.add_argument("--kills", type=int, default=20)
    ap.add_argument("--dynamic-binary", default=f"{REPO}/target/dynamic/release/heartwatch",
                    help="heartwatch linked against the shared glibc, for the RSS experiments")
    ap.add_argument("--no-experiments", action="store_true", help="skip the RSS experiments")
    ap.add_argument("--no-peers", action="store_true",
                    help="heartwatch alone: skip watchdog and monit")
    ap.add_argument("--no-idle", action="store_true",
                    help="skip the idle host: 1 000 healthy heartbeat rules (MaxAge=2h) whose files are "
                         "not touched, systemd's watchdog pings on")
    ap.add_argument("--no-periodic", action="store_true",
                    help="skip heartwatch on the periodic stat (as on NFS or FUSE) at 1 000 rules")
    ap.add_argument("--intervals", default="1s,default",
                    help="heartwatch CheckInterval= values run per size (default: 1s,default)")
    ap.add_argument("--no-mixed", action="store_true",
                    help="skip the mixed workload (1000 heartbeat, 100 system, 20 command rules)")
    args = ap.parse_args()

    def stop(signum, frame):
        kill_all()
        sys.exit(128 + signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    os.makedirs(ROOT, exist_ok=True)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    results = []
    try:
        for n in [int(x) for x in args.sizes.split(",") if x]:
            wl = Workload(f"hb{n}", n, 0)
            window = args.window if n < 10000 else args.window_large
            intervals = [x for x in args.intervals.split(",") if x]
            daemons = []
            if "1s" in intervals:
                daemons.append(Heartwatch(wl, "1s", args.binary))
            if not args.no_peers:
                daemons += [Watchdog(wl), Monit(wl)]
            if "default" in intervals:
                daemons.append(Heartwatch(wl, None, args.binary, label="heartwatch-default"))
            for iv in intervals:
                if iv not in ("1s", "default"):
                    daemons.append(Heartwatch(wl, iv, args.binary, label=f"heartwatch-{iv}"))
            if n == 1000 and not args.no_periodic:
                # The periodic stat that a rule on NFS or FUSE uses: here
                # forced by an inotify watch limit of 0 in a user namespace
                # of its own (heartwatch falls back rule by rule, and says so).
                for iv, label in (("1s", "heartwatch-periodic"), (None, "heartwatch-periodic-default")):
                    daemons.append(Heartwatch(wl, iv, args.binary, label=label, wrapper=NO_INOTIFY))
            for d in daemons:
                results.append(run_one(d, wl, args, window, breakdown=(d.label == "heartwatch" and n == 1000)))
                if d.label.startswith("heartwatch-periodic") and not d.said("on the periodic stat"):
                    raise RuntimeError(f"{d.label}: heartwatch did not fall back to the periodic stat")
            if n == 1000 and not args.no_peers:
                # Does the cost follow the checks, or the wakeups? A ten
                # times finer interval, same rules.
                d = Heartwatch(wl, "100ms", args.binary, label="heartwatch-100ms")
                results.append(run_one(d, wl, args, window))
            wl.cleanup()
        if not args.no_idle:
            # An idle host: 1 000 healthy rules whose files nobody touches
            # in the window, and systemd's watchdog as the shipped unit sets
            # it (WatchdogSec=10s: a ping every 5 s). What is left is the
            # daemon's own rhythm.
            wl = Workload("idle1000", 1000, 0)
            wl.touching = False
            wl.max_age = 7200
            idle_args = argparse.Namespace(**vars(args))
            idle_args.warmup = 3.0
            d = Heartwatch(wl, None, args.binary, label="heartwatch-idle",
                           env={"WATCHDOG_USEC": "10000000"}, notify=True)
            results.append(run_one(d, wl, idle_args, args.window, stale=False))
            wl.cleanup()
        if not args.no_mixed:
            # What the other kinds add: the heartbeats of hb1000 beside 100
            # [System] and 20 [Command] rules, heartwatch alone (the peers'
            # equivalents are configured differently enough not to compare).
            wl = Workload("mixed", 1000, 0)
            wl.extra_rules = mixed_rules()
            d = Heartwatch(wl, "1s", args.binary)
            refused = d.refused_config()
            if refused:
                log(f"mixed: skipped: heartwatch check refuses its rules: {refused}")
            else:
                results.append(run_one(d, wl, args, args.window))
            wl.cleanup()
        if args.procs:
            wl = Workload(f"proc{args.procs}", 0, args.procs)
            for d in (Heartwatch(wl, None, args.binary), Monit(wl)):
                results.append(run_one(d, wl, args, args.window, stale=False, kills=args.kills))
                wl.cleanup()
        if not args.no_experiments:
            # Where heartwatch's RSS goes, and what would shrink it: 1 000
            # heartbeat rules, CheckInterval=1s, back to back.
            wl = Workload("rss1000", 1000, 0)
            variants = [
                ("as shipped (static glibc, mlockall MCL_ONFAULT)", args.binary, {}, []),
                ("no mlockall (CAP_IPC_LOCK dropped, RLIMIT_MEMLOCK=0)", args.binary, {},
                 ["setpriv", "--bounding-set=-ipc_lock", "--inh-caps=-ipc_lock",
                  "prlimit", "--memlock=0:0"]),
            ]
            if os.path.exists(args.dynamic_binary):
                variants.append(("linked against the shared glibc (ld.so, libc.so.6)", args.dynamic_binary, {}, []))
            for i, (label, binary, env, wrapper) in enumerate(variants):
                d = Heartwatch(wl, "1s", binary, env=env, label=f"rss-{i}", wrapper=wrapper)
                r = run_one(d, wl, args, 8.0, stale=False, breakdown=True)
                r["variant"] = label
                results.append(r)
            wl.cleanup()
    finally:
        kill_all()
        with open(args.out, "w") as f:
            json.dump({"max_age_s": MAX_AGE, "touch_period_s": TOUCH_PERIOD, "results": results}, f, indent=1)
        log(f"results in {args.out}")


if __name__ == "__main__":
    main()
