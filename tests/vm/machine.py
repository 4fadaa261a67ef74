"""One QEMU virtual machine: boot it, read its console and QMP events, wait on them.

Every wait has a timeout and also ends early when the guest reports
"@@ FAIL ..." or QEMU exits, so a scenario never waits longer than it must.
Times are host monotonic seconds at which the line or event was read.
"""

import json
import os
import socket
import subprocess
import threading
import time
from dataclasses import dataclass

# QEMU exit statuses: isa-debug-exit turns a guest byte V into 2*V+1.
EXIT_GUEST_DONE = 1  # vm_done
EXIT_GUEST_FAILED = 3  # vm_fail
EXIT_POWEROFF = 0  # a poweroff, the watchdog's included; tell them apart by QMP events

KILL_GRACE = 3  # seconds between SIGTERM and SIGKILL when stopping QEMU


class Failed(Exception):
    """A scenario's assertion did not hold; the message says what was seen."""


@dataclass(frozen=True)
class Line:
    t: float
    text: str


@dataclass(frozen=True)
class Event:
    t: float
    name: str
    data: dict


class Machine:
    def __init__(self, qemu, kernel_image, initrd, workdir, *, action="poweroff",
                 reboot=False, share=None, memory=256, budget=120):
        """action: QEMU's -action watchdog=...; reboot: let a guest reset reboot
        (otherwise -no-reboot turns it into an exit); share: a host directory
        the guest mounts with vm_mount_host; budget: seconds after which QEMU
        is killed whatever happens."""
        self.workdir = workdir
        self.qmp_path = os.path.join(workdir, "qmp.sock")
        self.console_path = os.path.join(workdir, "console.log")
        self.cmd = [
            qemu, "-accel", "tcg", "-m", str(memory), "-smp", "1",
            "-nodefaults", "-no-user-config", "-display", "none",
            "-chardev", "stdio,id=console,signal=off", "-serial", "chardev:console",
            "-qmp", f"unix:{self.qmp_path},server=on,wait=on",
            "-kernel", str(kernel_image), "-initrd", str(initrd),
            "-append", "console=ttyS0 panic=-1 quiet",
            "-device", "i6300esb", "-action", f"watchdog={action}",
            "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04",
        ]
        if not reboot:
            self.cmd.append("-no-reboot")
        if share is not None:
            self.cmd += ["-virtfs",
                         f"local,path={share},mount_tag=host,security_model=none,id=host"]
        self.budget = budget
        self.lines = []
        self.events = []
        self.returncode = None
        self._cond = threading.Condition()
        self._open_streams = 0
        self._proc = None
        self._killer = None
        self._console = None
        self._stderr = None
        self.t0 = None

    def start(self):
        self.t0 = time.monotonic()
        self._stderr = open(os.path.join(self.workdir, "qemu.stderr"), "wb")
        self._console = open(self.console_path, "w")
        self._proc = subprocess.Popen(self.cmd, stdin=subprocess.DEVNULL,
                                      stdout=subprocess.PIPE, stderr=self._stderr)
        self._killer = threading.Timer(self.budget, self._over_budget)
        self._killer.daemon = True
        self._killer.start()
        self._reader(self._read_console)
        qmp = self._connect_qmp()
        self._reader(self._read_qmp, qmp)
        return self

    def _over_budget(self):
        self._note(f"harness: budget of {self.budget} s spent, killing QEMU")
        self._proc.kill()

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
            self.lines.append(Line(time.monotonic(), text))
            if self._console is not None and not self._console.closed:
                self._console.write(f"[{self.elapsed():7.2f}] {text}\n")
                self._console.flush()
            self._cond.notify_all()

    def _read_console(self):
        for raw in iter(self._proc.stdout.readline, b""):
            text = raw.decode(errors="replace").rstrip("\r\n").replace("\r", "")
            self._note(text)
        self._closed()

    def _connect_qmp(self):
        deadline = time.monotonic() + 10
        while True:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.connect(self.qmp_path)
                break
            except (FileNotFoundError, ConnectionRefusedError):
                sock.close()
                if time.monotonic() > deadline or self._proc.poll() is not None:
                    self.stop()
                    raise Failed(f"QEMU did not open its QMP socket: {self.qemu_stderr()}")
                time.sleep(0.05)
        sock.sendall(b'{"execute": "qmp_capabilities"}\n')
        return sock

    def _read_qmp(self, sock):
        with sock, sock.makefile("rb") as stream:
            for raw in stream:
                msg = json.loads(raw)
                if "event" in msg:
                    event = Event(time.monotonic(), msg["event"], msg.get("data", {}))
                    with self._cond:
                        self.events.append(event)
                        self._cond.notify_all()
                    self._note(f"qmp: {event.name} {json.dumps(event.data)}")
        self._closed()

    def elapsed(self, t=None):
        return (time.monotonic() if t is None else t) - self.t0

    def exited(self):
        """True once QEMU has exited and both of its streams have been read to the end."""
        return self._open_streams == 0

    def _wait(self, find, what, timeout):
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = find()
                if found is not None:
                    return found
                failure = next((l for l in self.lines if l.text.startswith("@@ FAIL")), None)
                if failure is not None:
                    raise Failed(f"guest: {failure.text[len('@@ FAIL '):]}")
                if self.exited():
                    raise Failed(f"VM ended ({self.describe_exit()}) before {what}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise Failed(f"no {what} within {timeout:g} s")
                self._cond.wait(left)

    def wait_line(self, text, timeout, after=0.0):
        """The first console line containing TEXT read after time AFTER."""
        return self._wait(
            lambda: next((l for l in self.lines if l.t >= after and text in l.text), None),
            f"console line with {text!r}", timeout)

    def wait_mark(self, name, timeout, after=0.0):
        """The guest's `vm_mark NAME...` line."""
        return self.wait_line(f"@@ {name}", timeout, after)

    def wait_event(self, name, timeout, after=0.0):
        return self._wait(
            lambda: next((e for e in self.events if e.t >= after and e.name == name), None),
            f"QMP event {name}", timeout)

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

    def events_named(self, name):
        with self._cond:
            return [e for e in self.events if e.name == name]

    def describe_exit(self):
        if self._proc is None:
            return "QEMU did not start"
        code = self._proc.poll()
        meaning = {EXIT_GUEST_DONE: "guest done", EXIT_GUEST_FAILED: "guest failed",
                   EXIT_POWEROFF: "poweroff"}.get(code, "unexpected")
        events = ", ".join(f"{e.name} {json.dumps(e.data)}" for e in self.events) or "none"
        return f"exit status {code} ({meaning}); QMP events: {events}"

    def qemu_stderr(self):
        """What QEMU said on stderr, less its notice that it waits for the QMP client."""
        path = os.path.join(self.workdir, "qemu.stderr")
        if not os.path.exists(path):
            return ""
        with open(path, errors="replace") as f:
            return "\n".join(l for l in f.read().strip().splitlines()
                             if "QEMU waiting for connection" not in l)

    def console_tail(self, n=40):
        if self.t0 is None:
            return []
        with self._cond:
            return [f"[{self.elapsed(l.t):7.2f}] {l.text}" for l in self.lines[-n:]]

    def stop(self):
        """Ends QEMU if it still runs; safe to call more than once."""
        if self._killer is not None:
            self._killer.cancel()
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=KILL_GRACE)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        with self._cond:
            self._cond.wait_for(self.exited, timeout=KILL_GRACE)
            if self._console is not None:
                self._console.close()
        if self._stderr is not None:
            self._stderr.close()
