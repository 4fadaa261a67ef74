"""One QEMU virtual machine for the test suites that boot one (tests/vm/,
tests/system/): start it, read its serial console and QMP events, send QMP
commands, wait on what it says, stop it.

Plain Python 3 standard library. Every line of the console and every QMP
event is kept with the host's monotonic time at which it was read; every
wait has a timeout and ends early when QEMU exits or when the machine's
`abort` says so (guest_failed, hardware_watchdog_fired), so a scenario never
waits longer than it must. QEMU is always run with TCG (see "Why TCG, never
KVM" in tests/vm/README.md).
"""

import json
import os
import re
import signal
import socket
import subprocess
import threading
import time
from typing import NamedTuple

KILL_GRACE = 3  # seconds a stop waits for each of QMP quit, SIGTERM and SIGKILL
QMP_CONNECT = 20  # seconds QEMU has to open its QMP socket
QMP_REPLY = 10  # seconds a QMP command waits for its answer


class Failed(Exception):
    """A scenario's expectation did not hold; the message says what was seen."""


class Line(NamedTuple):
    t: float
    text: str


class Event(NamedTuple):
    t: float
    name: str
    data: dict


def guest_failed(machine, what):
    """An abort for guests that report failure with a `@@ FAIL WHY` line."""
    failure = machine.line(r"^@@ FAIL")
    if failure is not None:
        return f"guest: {failure.text[len('@@ FAIL '):]}"
    return None


def hardware_watchdog_fired(machine, what):
    """An abort for machines whose watchdog must never fire."""
    fired = machine.event("WATCHDOG")
    if fired is not None:
        return (f"the hardware watchdog fired (QMP WATCHDOG at {machine.elapsed(fired.t):.1f} s)"
                f" before {what}")
    return None


class Machine:
    def __init__(self, workdir, *, kernel, initrd, append, name=None,
                 qemu="qemu-system-x86_64", memory=256, smp=1, action="poweroff",
                 reboot=False, share=None, extra=(), budget=120, abort=None,
                 exit_meanings=None):
        """A QEMU with one i6300ESB, booting KERNEL and INITRD with the kernel
        command line APPEND, its files (console log, QEMU's stderr, the QMP
        socket) in WORKDIR, named after NAME when several share it.
        action: QEMU's -action watchdog=...; reboot: let a reset reboot
        (otherwise -no-reboot turns it into an exit); share: a host directory
        the guest mounts as 9p tag `host`; extra: more QEMU arguments;
        budget: seconds after which QEMU is killed whatever happens;
        abort(machine, what): why a wait for WHAT must fail now, or None;
        exit_meanings: QEMU exit status -> what it means, for describe_exit."""
        suffix = f"-{name}" if name else ""
        self.workdir = workdir
        self.console_path = os.path.join(workdir, f"console{suffix}.log")
        self.stderr_path = os.path.join(workdir, f"qemu{suffix}.stderr")
        self.qmp_path = os.path.join(workdir, f"qmp{suffix}.sock")
        self.cmd = [
            qemu, "-accel", "tcg", "-m", str(memory), "-smp", str(smp),
            "-nodefaults", "-no-user-config", "-display", "none",
            "-chardev", "stdio,id=console,signal=off", "-serial", "chardev:console",
            "-qmp", f"unix:{self.qmp_path},server=on,wait=on",
            "-kernel", str(kernel), "-initrd", str(initrd), "-append", append,
            "-device", "i6300esb", "-action", f"watchdog={action}",
            *extra,
        ]
        if not reboot:
            self.cmd.append("-no-reboot")
        if share is not None:
            self.cmd += ["-virtfs",
                         f"local,path={share},mount_tag=host,security_model=none,id=host"]
        self.budget = budget
        self.abort = abort
        self.exit_meanings = exit_meanings or {0: "poweroff"}
        self.lines = []
        self.events = []
        self.returncode = None
        self.t0 = None
        self._cond = threading.Condition()
        self._open_streams = 0
        self._replies = {}
        self._next_id = 0
        self._send_lock = threading.Lock()
        self._qmp = None
        self._proc = None
        self._killer = None
        self._console = None
        self._stderr = None

    # ---- starting and reading --------------------------------------------

    def start(self):
        self.t0 = time.monotonic()
        self._stderr = open(self.stderr_path, "wb")
        self._console = open(self.console_path, "w")
        self._proc = subprocess.Popen(self.cmd, stdin=subprocess.DEVNULL,
                                      stdout=subprocess.PIPE, stderr=self._stderr)
        self._killer = threading.Timer(self.budget, self._over_budget)
        self._killer.daemon = True
        self._killer.start()
        self._reader(self._read_console)
        self._qmp = self._connect_qmp()
        self._reader(self._read_qmp, self._qmp)
        # With wait=on QEMU holds the guest until a client has connected;
        # this is the first command, answered before anything else.
        try:
            self.command("qmp_capabilities")
        except Failed as e:
            self.stop()
            raise Failed(f"{e}: {self.qemu_stderr()}") from None
        return self

    def _over_budget(self):
        self._note(f"harness: budget of {self.budget} s spent, killing QEMU")
        self._signal(signal.SIGKILL)

    def _reader(self, fn, *args):
        with self._cond:
            self._open_streams += 1
        threading.Thread(target=fn, args=args, daemon=True).start()

    def _closed(self):
        with self._cond:
            self._open_streams -= 1
            self._cond.notify_all()

    def _note(self, text):
        with self._cond:
            now = time.monotonic()
            self.lines.append(Line(now, text))
            if self._console is not None and not self._console.closed:
                self._console.write(f"[{self.elapsed(now):7.2f}] {text}\n")
                self._console.flush()
            self._cond.notify_all()

    def _read_console(self):
        try:
            for raw in iter(self._proc.stdout.readline, b""):
                self._note(raw.decode(errors="replace").rstrip("\r\n").replace("\r", ""))
        finally:
            self._closed()

    def _connect_qmp(self):
        deadline = time.monotonic() + QMP_CONNECT
        while True:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.connect(self.qmp_path)
                return sock
            except (FileNotFoundError, ConnectionRefusedError):
                sock.close()
                if time.monotonic() > deadline or self._proc.poll() is not None:
                    self.stop()
                    raise Failed(f"QEMU did not open its QMP socket: {self.qemu_stderr()}")
                time.sleep(0.05)

    def _read_qmp(self, sock):
        try:
            self._read_qmp_messages(sock)
        except OSError:
            pass  # QEMU went away (a reset connection): the stream has ended
        finally:
            sock.close()
            self._closed()

    def _read_qmp_messages(self, sock):
        with sock.makefile("rb") as stream:
            for raw in stream:
                msg = json.loads(raw)
                if "event" in msg:
                    event = Event(time.monotonic(), msg["event"], msg.get("data", {}))
                    with self._cond:
                        self.events.append(event)
                        self._cond.notify_all()
                    self._note(f"qmp: {event.name} {json.dumps(event.data)}")
                elif "id" in msg:
                    with self._cond:
                        self._replies[msg["id"]] = msg
                        self._cond.notify_all()

    # ---- QMP commands -----------------------------------------------------

    def command(self, name, timeout=QMP_REPLY, **arguments):
        """Runs the QMP command NAME (arguments with `-` spelled `_`) and
        returns its `return` value; Failed on an error, a closed monitor or
        no answer within TIMEOUT seconds."""
        with self._cond:
            self._next_id += 1
            ident = self._next_id
        request = {"execute": name, "id": ident}
        if arguments:
            request["arguments"] = {k.replace("_", "-"): v for k, v in arguments.items()}
        try:
            with self._send_lock:
                self._qmp.sendall(json.dumps(request).encode() + b"\n")
        except (OSError, AttributeError) as e:
            raise Failed(f"QMP {name}: the monitor is closed ({e})") from None
        deadline = time.monotonic() + timeout
        with self._cond:
            while ident not in self._replies:
                left = deadline - time.monotonic()
                if self.exited():
                    raise Failed(f"QMP {name}: QEMU exited before answering")
                if left <= 0:
                    raise Failed(f"QMP {name}: no answer within {timeout:g} s")
                self._cond.wait(left)
            reply = self._replies.pop(ident)
        if "error" in reply:
            raise Failed(f"QMP {name}: {reply['error'].get('desc', reply['error'])}")
        return reply.get("return")

    def quit(self):
        """Asks QEMU to exit (QMP quit): the first step of stop()."""
        self.command("quit", timeout=KILL_GRACE)

    # ---- what was seen ----------------------------------------------------

    def elapsed(self, t=None):
        return (time.monotonic() if t is None else t) - self.t0

    def exited(self):
        """True once QEMU has exited and both of its streams have been read to the end."""
        return self._open_streams == 0

    def line(self, pattern, after=0.0):
        """The first console line read at or after AFTER that matches the
        regular expression PATTERN, or None."""
        rx = re.compile(pattern)
        with self._cond:
            return next((l for l in self.lines if l.t >= after and rx.search(l.text)), None)

    def lines_between(self, prefix, start, end):
        """The text of the console lines read between START and END that start with PREFIX."""
        with self._cond:
            return [l.text for l in self.lines if start <= l.t <= end and l.text.startswith(prefix)]

    def event(self, name, after=0.0):
        """The first QMP event NAME read at or after AFTER, or None."""
        with self._cond:
            return next((e for e in self.events if e.t >= after and e.name == name), None)

    def events_named(self, name):
        with self._cond:
            return [e for e in self.events if e.name == name]

    def watchdog_fired(self, before=float("inf")):
        """When the first WATCHDOG event was read, if it was before BEFORE."""
        fired = self.event("WATCHDOG")
        return fired.t if fired is not None and fired.t <= before else None

    # ---- waiting ----------------------------------------------------------

    def wait(self, find, what, timeout):
        """What FIND() returns once it is not None; Failed when the abort
        says so, when QEMU has exited or after TIMEOUT seconds."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = find()
                if found is not None:
                    return found
                why = self.abort(self, what) if self.abort is not None else None
                if why is not None:
                    raise Failed(why)
                if self.exited():
                    raise Failed(f"the VM ended ({self.describe_exit()}) before {what}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise Failed(f"no {what} within {timeout:g} s")
                self._cond.wait(left)

    def wait_line(self, text, timeout, after=0.0):
        """The first console line containing TEXT read at or after AFTER."""
        return self.wait(lambda: self.line(re.escape(text), after),
                         f"console line with {text!r}", timeout)

    def wait_mark(self, name, timeout, after=0.0):
        """The guest's `@@ NAME...` line."""
        return self.wait_line(f"@@ {name}", timeout, after)

    def wait_event(self, name, timeout, after=0.0):
        return self.wait(lambda: self.event(name, after), f"QMP event {name}", timeout)

    def wait_exit(self, timeout):
        """QEMU's exit status, once it has exited and its output has been read."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not self.exited():
                left = deadline - time.monotonic()
                if left <= 0:
                    raise Failed(f"VM still running after {timeout:g} s")
                self._cond.wait(left)
        self.returncode = self._proc.wait(timeout=KILL_GRACE)
        return self.returncode

    def expect_exit(self, status, timeout):
        code = self.wait_exit(timeout)
        if code != status:
            raise Failed(f"expected QEMU exit status {status}, got {self.describe_exit()}")

    # ---- reporting --------------------------------------------------------

    def describe_exit(self):
        if self._proc is None:
            return "QEMU did not start"
        try:
            code = self._proc.wait(timeout=KILL_GRACE if self.exited() else 0)
        except subprocess.TimeoutExpired:
            code = None
        if code is None:
            state = "QEMU still running"
        else:
            state = f"exit status {code} ({self.exit_meanings.get(code, 'unexpected')})"
        with self._cond:
            events = ", ".join(f"{e.name} {json.dumps(e.data)}" for e in self.events)
        return f"{state}; QMP events: {events or 'none'}"

    def qemu_stderr(self):
        """What QEMU said on stderr, less its notice that it waits for the QMP client."""
        try:
            with open(self.stderr_path, errors="replace") as f:
                text = f.read()
        except OSError:
            return ""
        return "\n".join(l for l in text.strip().splitlines()
                         if "QEMU waiting for connection" not in l)

    def console_tail(self, n=40):
        """The last N console lines, as in the console log."""
        if self.t0 is None:
            return []
        with self._cond:
            return [f"[{self.elapsed(l.t):7.2f}] {l.text}" for l in self.lines[-n:]]

    # ---- stopping ---------------------------------------------------------

    def _signal(self, sig):
        """Sends SIG to QEMU by its PID unless it has been reaped (so the PID
        cannot belong to another process by now)."""
        if self._proc is not None and self._proc.poll() is None:
            try:
                os.kill(self._proc.pid, sig)
            except ProcessLookupError:
                pass

    def stop(self):
        """Ends QEMU if it still runs (QMP quit, then SIGTERM, then SIGKILL,
        KILL_GRACE seconds each), waits for its streams, closes the files and
        removes the QMP socket; safe to call more than once."""
        if self._killer is not None:
            self._killer.cancel()
        if self._proc is not None:
            steps = [self.quit, lambda: self._signal(signal.SIGTERM),
                     lambda: self._signal(signal.SIGKILL)]
            for step in steps:
                if self._proc.poll() is not None:
                    break
                try:
                    step()
                except Failed:
                    pass
                try:
                    self._proc.wait(timeout=KILL_GRACE)
                except subprocess.TimeoutExpired:
                    pass
            self._proc.wait()
            with self._cond:
                self._cond.wait_for(self.exited, timeout=KILL_GRACE)
        with self._cond:
            if self._console is not None:
                self._console.close()
        if self._stderr is not None:
            self._stderr.close()
        try:
            os.unlink(self.qmp_path)
        except FileNotFoundError:
            pass
