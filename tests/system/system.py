"""heartwatch system tests: the packages on a real Debian bookworm system
booted with systemd as PID 1 in QEMU (TCG) with an emulated i6300ESB.

Builds the packages, builds (once per machine, cached) the Debian image,
then boots it three times with -snapshot: once for the scenarios that share
one boot in order (install, reload, SIGSTOP, kill -9, EBUSY, upgrade,
purge), once for the ladder that ends in a reboot, once for Debian's
watchdog package beside heartwatch and a watchdog driver loaded late. The rpm scenario runs on the
host. The guest reports over the serial console with `@@` markers (see
guest/lib); QMP events tell a hardware watchdog reset from a reboot.

Prints `PASS system: NAME (T s)` or `FAIL system: NAME: WHY` per scenario
and `N passed, N failed` last; exits 1 when any failed.
"""

import fcntl
import glob
import hashlib
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "qemu"))
sys.dont_write_bytecode = True  # no __pycache__ in the source tree
import qemu  # noqa: E402  (the QEMU driver both VM suites use)
from qemu import Failed  # noqa: E402
CACHE = os.environ.get("HEARTWATCH_SYSTEM_CACHE", "/var/cache/heartwatch-system")
SUITE = "bookworm"

# Debian packages the suite needs on the host, by the command that shows
# each is there.
HOST_PACKAGES = {
    "qemu-system-x86_64": "qemu-system-x86",
    "debootstrap": "debootstrap",
    "mkfs.ext4": "e2fsprogs",
    "rpm": "rpm",
    "modprobe": "kmod",
    "depmod": "kmod",
    "dpkg-deb": "dpkg",
}


def say(text):
    print(f"system: {text}", flush=True)


def run(cmd, *, timeout, log=None, **kw):
    """Runs CMD with a bound; its output goes to LOG (a path) when given."""
    if log is None:
        return subprocess.run(cmd, check=True, timeout=timeout, **kw)
    with open(log, "ab") as out:
        try:
            return subprocess.run(cmd, check=True, timeout=timeout, stdout=out,
                                  stderr=subprocess.STDOUT, **kw)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
            out.flush()
            print(tail(log, 40), file=sys.stderr)
            raise


def tail(path, n):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-n:])
    except OSError as e:
        return f"({path}: {e})"


# ---- host preparation -------------------------------------------------------

def ensure_host_packages():
    missing = sorted({pkg for cmd, pkg in HOST_PACKAGES.items() if shutil.which(cmd) is None})
    if not glob.glob("/boot/vmlinuz-*"):
        missing.append("linux-image-amd64")
    if not os.path.exists("/usr/share/keyrings/debian-archive-keyring.gpg"):
        missing.append("debian-archive-keyring")  # debootstrap only recommends it
    if not missing:
        return
    say(f"installing {' '.join(missing)}")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    run(["apt-get", "update"], timeout=900, env=env)
    run(["apt-get", "install", "-y", "--no-install-recommends", *missing], timeout=1800, env=env)


def host_kernel():
    """The newest installed Debian kernel: (version, vmlinuz, initrd)."""
    def key(path):
        return [int(x) if x.isdigit() else x for x in re.split(r"(\d+)", path)]
    for vmlinuz in sorted(glob.glob("/boot/vmlinuz-*"), key=key, reverse=True):
        version = vmlinuz[len("/boot/vmlinuz-"):]
        initrd = f"/boot/initrd.img-{version}"
        if os.path.exists(initrd) and os.path.isdir(f"/lib/modules/{version}"):
            return version, vmlinuz, initrd
    raise Failed("no /boot/vmlinuz-* with its initrd and modules: apt-get install linux-image-amd64")


def debian_mirror():
    """The Debian mirror that apt on this machine uses for bookworm."""
    if os.environ.get("HEARTWATCH_SYSTEM_MIRROR"):
        return os.environ["HEARTWATCH_SYSTEM_MIRROR"]
    for path in ["/etc/apt/sources.list", *sorted(glob.glob("/etc/apt/sources.list.d/*"))]:
        try:
            text = open(path).read()
        except OSError:
            continue
        if path.endswith(".sources"):
            for stanza in re.split(r"\n\s*\n", text):
                fields = dict(re.findall(r"^(\w[\w-]*):\s*(.*)$", stanza, re.M))
                if ("deb" in fields.get("Types", "").split()
                        and SUITE in fields.get("Suites", "").split()
                        and "main" in fields.get("Components", "").split()):
                    return fields["URIs"].split()[0]
        else:
            for m in re.finditer(rf"^deb\s+(?:\[[^]]*\]\s+)?(\S+)\s+{SUITE}\s.*\bmain\b", text, re.M):
                return m.group(1)
    return "http://deb.debian.org/debian"


def sha256_files(paths):
    h = hashlib.sha256()
    for p in paths:
        h.update(p.encode() + b"\0")
        with open(p, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    return h


def image(workdir):
    """The cached image directory (root.img, rootfs/, vmlinuz, initrd),
    built when the recipe, the kernel or the initrd changed."""
    version, vmlinuz, initrd = host_kernel()
    recipe = sorted(glob.glob(os.path.join(HERE, "image", "*")))
    h = sha256_files(recipe + [vmlinuz, initrd])
    h.update(f"{SUITE} {version}".encode())
    key = h.hexdigest()[:16]
    final = os.path.join(CACHE, f"{SUITE}-{key}")
    os.makedirs(CACHE, exist_ok=True)
    with open(os.path.join(CACHE, ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if os.path.exists(os.path.join(final, "done")):
            say(f"image: cached {final}")
            return final
        building = final + ".building"
        shutil.rmtree(building, ignore_errors=True)
        os.makedirs(building)
        mirror = debian_mirror()
        say(f"image: building {final} (debootstrap {SUITE} from {mirror}, kernel {version})")
        started = time.monotonic()
        log = os.path.join(workdir, "image-build.log")
        run([os.path.join(HERE, "image", "build"), building, mirror, version],
            timeout=1800, log=log)
        shutil.copy(vmlinuz, os.path.join(building, "vmlinuz"))
        shutil.copy(initrd, os.path.join(building, "initrd"))
        open(os.path.join(building, "done"), "w").close()
        shutil.rmtree(final, ignore_errors=True)
        os.rename(building, final)
        say(f"image: built in {time.monotonic() - started:.0f} s")
        return final


def build_packages(workdir):
    """Builds the .deb and .rpm fresh; returns (deb, rpm)."""
    say("building the packages (packaging/build)")
    started = time.monotonic()
    run([os.path.join(REPO, "packaging", "build")], timeout=3000,
        log=os.path.join(workdir, "packaging-build.log"), cwd=REPO)
    out = os.path.join(REPO, "target", "packages")
    debs = glob.glob(os.path.join(out, "heartwatch_*.deb"))
    rpms = glob.glob(os.path.join(out, "heartwatch-*.rpm"))
    if len(debs) != 1 or len(rpms) != 1:
        raise Failed(f"packaging/build made {debs + rpms}, not one .deb and one .rpm")
    say(f"packages built in {time.monotonic() - started:.0f} s")
    return debs[0], rpms[0]


def newer_deb(deb, workdir):
    """The same package with a higher version, as an upgrade would bring."""
    tree = os.path.join(workdir, "newer")
    run(["dpkg-deb", "--raw-extract", deb, tree], timeout=120)
    control = os.path.join(tree, "DEBIAN", "control")
    text = open(control).read()
    version = re.search(r"^Version: (\S+)$", text, re.M).group(1) + "+systemtest1"
    open(control, "w").write(re.sub(r"^Version: .*$", f"Version: {version}", text, flags=re.M))
    out = os.path.join(workdir, "heartwatch-newer.deb")
    run(["dpkg-deb", "--root-owner-group", "-Zxz", "--build", tree, out], timeout=300,
        stdout=subprocess.DEVNULL)
    shutil.rmtree(tree)
    return out, version


# ---- the virtual machine ----------------------------------------------------

def machine(name, img, share, workdir, stage, *, reboot, budget, append=""):
    """The image booted with -snapshot into STAGE of the guest's scripts.
    Its waits fail as soon as the hardware watchdog fires."""
    return qemu.Machine(
        workdir, name=name, memory=1024, smp=2,
        kernel=os.path.join(img, "vmlinuz"), initrd=os.path.join(img, "initrd"),
        append=f"root=/dev/vda rw console=ttyS0 panic=-1 hwtest.stage={stage} {append}".rstrip(),
        extra=["-drive", f"file={os.path.join(img, 'root.img')},if=virtio,format=raw,"
                         "cache=unsafe,snapshot=on"],
        share=share, reboot=reboot, budget=budget, abort=qemu.hardware_watchdog_fired)


# ---- scenarios --------------------------------------------------------------

class Report:
    def __init__(self):
        self.passed = 0
        self.failed = 0
        self.names = set()

    def ok(self, name, secs, detail=""):
        self.names.add(name)
        self.passed += 1
        print(f"PASS system: {name} ({secs:.1f} s){detail}", flush=True)

    def fail(self, name, why, machine=None, guest_failed_at=None):
        self.names.add(name)
        self.failed += 1
        print(f"FAIL system: {name}: {why}", flush=True)
        if guest_failed_at is not None:
            # The guest follows its FAIL with the unit's status and journal.
            try:
                machine.wait(lambda: machine.line(r"^@@ DIAGNOSED$", guest_failed_at),
                             "the guest's diagnosis", 20)
            except Failed:
                pass
        if machine is not None:
            print(f"---- last lines of the guest console ({machine.console_path})", flush=True)
            print("\n".join(machine.console_tail(60)), flush=True)
            print("----", flush=True)


def result_line(m, name, after):
    return m.line(rf"^@@ (PASS|FAIL) ({re.escape(name)}|driver)(\W|$)", after)


def guest_scenarios(m, names, timeouts, report, after=0.0):
    """Waits for each of the guest's scenarios in turn and reports it."""
    for i, name in enumerate(names):
        try:
            t, text = m.wait(lambda: result_line(m, name, after), f"result of {name}", timeouts[name])
        except Failed as e:
            report.fail(name, str(e), m)
            for rest in names[i + 1:]:
                report.fail(rest, f"not run: {name} did not finish")
            return False
        begin = m.line(rf"^@@ BEGIN {re.escape(name)}$", after)
        secs = t - (begin.t if begin else after or m.t0)
        after = t
        fired = m.watchdog_fired(before=t)
        if text.startswith("@@ PASS") and fired is None:
            report.ok(name, secs, text[len(f"@@ PASS {name}"):])
        elif text.startswith("@@ PASS"):
            report.fail(name, f"the hardware watchdog fired at {fired - m.t0:.1f} s", m)
        else:
            report.fail(name, text.split(": ", 1)[-1], m, guest_failed_at=t)
    return True


def main_boot(img, share, workdir, report):
    names = ["install", "reload", "sigstop", "kill9", "ebusy", "upgrade", "purge"]
    timeouts = {"install": 180, "reload": 90, "sigstop": 120, "kill9": 90,
                "ebusy": 180, "upgrade": 120, "purge": 120}
    m = machine("main", img, share, workdir, "main", reboot=False, budget=sum(timeouts.values()) + 120)
    say("booting the Debian system for scenarios " + ", ".join(names))
    m.start()
    try:
        if guest_scenarios(m, names, timeouts, report):
            try:
                m.wait(lambda: m.line(r"^@@ DONE"), "the guest's DONE", 30)
                code = m.wait_exit(60)
                if m.watchdog_fired() is not None:
                    report.fail("shutdown", "the hardware watchdog fired after the last scenario", m)
                elif code != 0:
                    report.fail("shutdown", f"QEMU exit status {code}", m)
            except Failed as e:
                report.fail("shutdown", str(e), m)
    finally:
        m.stop()


def reboot_boot(img, share, workdir, report):
    """The ladder that ends in a reboot, then, in the boot after it, how
    heartwatch started with that boot."""
    name = "reboot"
    m = machine("reboot", img, share, workdir, "reboot", reboot=True, budget=600)
    say("booting the Debian system for scenarios reboot, boot-start")
    m.start()
    rebooted_at = None
    try:
        begin = m.wait(lambda: m.line(r"^@@ BEGIN reboot$"), "the scenario's start", 180).t
        # The guest checks the ladder's repairs after the reboot, from what
        # it wrote to disk: the reboot may come before it could look.
        reset = m.wait(lambda: m.event("RESET", begin) or m.line(r"^@@ FAIL (reboot|driver)\b"),
                       "the reboot (QMP RESET)", 300)
        if isinstance(reset, qemu.Line):
            report.fail(name, reset.text.split(": ", 1)[-1], m, guest_failed_at=reset.t)
            raise Failed("the scenario failed before the reboot")
        rebooted_at, data = reset.t, reset.data
        t, text = m.wait(lambda: m.line(r"^@@ (PASS|FAIL) (reboot|driver)\b", rebooted_at),
                         "the result after the reboot", 240)
        down = [l.text for l in m.lines if begin <= l.t <= rebooted_at]
        if not data.get("guest"):
            report.fail(name, f"QEMU reset the VM, not the guest: {data}", m)
        elif not any("systemd-shutdown" in x for x in down):
            report.fail(name, "the console shows no systemd-shutdown before the reset: "
                        "not a reboot through systemd", m)
        elif m.watchdog_fired() is not None:
            report.fail(name, "the hardware watchdog fired", m)
        elif text.startswith("@@ FAIL"):
            report.fail(name, text.split(": ", 1)[-1], m, guest_failed_at=t)
        else:
            report.ok(name, t - begin, f" [reboot {rebooted_at - begin:.0f} s after the start]"
                      + text[len("@@ PASS reboot"):])
        guest_scenarios(m, ["boot-start"], {"boot-start": 60}, report, after=t)
        m.wait(lambda: m.line(r"^@@ DONE", t), "the guest's DONE", 30)
        m.wait_exit(60)
    except Failed as e:
        if name not in report.names:
            report.fail(name, str(e), m)
        if "boot-start" not in report.names:
            report.fail("boot-start", "not run: there was no reboot" if rebooted_at is None else str(e))
        elif not m.exited():
            say(f"reboot: {e}")
    finally:
        m.stop()


def coexist_boot(img, share, workdir, report):
    """Debian's watchdog package beside heartwatch's, then a boot in which
    the watchdog driver loads only after heartwatch has started. The driver
    is blacklisted on the kernel command line (udev's module loading obeys
    it; an explicit modprobe does not), so the guest loads it itself: in the
    first boot before the packages, in the second once heartwatch waits."""
    first = ["watchdog-refused", "watchdog-replaced", "watchdog-after"]
    timeouts = {"watchdog-refused": 240, "watchdog-replaced": 180, "watchdog-after": 180,
                "late-driver": 240}
    m = machine("coexist", img, share, workdir, "coexist", reboot=True,
                budget=sum(timeouts.values()) + 180, append="modprobe.blacklist=i6300esb")
    say("booting the Debian system for scenarios " + ", ".join(first + ["late-driver"]))
    m.start()
    try:
        if not guest_scenarios(m, first, timeouts, report):
            report.fail("late-driver", "not run: the first boot did not finish")
        else:
            reset = m.wait(lambda: m.event("RESET") or m.line(r"^@@ FAIL driver\b"),
                           "the reboot into the late-driver boot", 120)
            if isinstance(reset, qemu.Line):
                raise Failed(reset.text.split(": ", 1)[-1])
            guest_scenarios(m, ["late-driver"], timeouts, report, after=reset.t)
            m.wait(lambda: m.line(r"^@@ DONE", reset.t), "the guest's DONE", 60)
            m.wait_exit(60)
    except Failed as e:
        if "late-driver" not in report.names:
            report.fail("late-driver", str(e), m)
    finally:
        m.stop()


def debian_watchdog_deb(dest):
    """Debian's watchdog package, fetched by the host's apt (the host runs
    the image's release); the guest installs it from the share."""
    say("fetching Debian's watchdog package (apt-get download)")
    download = ["apt-get", "download", "watchdog"]
    if subprocess.run(download, cwd=dest, timeout=300, stdout=subprocess.DEVNULL,
                      stderr=subprocess.DEVNULL).returncode != 0:
        # A fresh machine may have no package lists yet.
        run(["apt-get", "update"], timeout=900, stdout=subprocess.DEVNULL)
        run(download, timeout=300, cwd=dest, stdout=subprocess.DEVNULL)
    debs = glob.glob(os.path.join(dest, "watchdog_*.deb"))
    if len(debs) != 1:
        raise Failed(f"apt-get download watchdog left {debs}")
    os.rename(debs[0], os.path.join(dest, "watchdog.deb"))


def rpm_layout(img, deb, rpm, workdir, report):
    """The rpm installs into a scratch root (a copy of the image's tree, so
    that its scriptlets have a shell) the same files as the deb."""
    name = "rpm-layout"
    started = time.monotonic()
    root = os.path.join(workdir, "rpmroot")
    try:
        run(["cp", "-a", "--reflink=auto", os.path.join(img, "rootfs"), root], timeout=300)
        proc = subprocess.run(["rpm", "-i", "--root", root, "--nodeps", rpm],
                              capture_output=True, text=True, timeout=300)
        if proc.returncode != 0:
            raise Failed(f"rpm -i --root exit status {proc.returncode}: {proc.stderr.strip()}")
        if "scriptlet failed" in proc.stderr:
            raise Failed(f"rpm -i: {proc.stderr.strip()}")
        listing = subprocess.run(["dpkg-deb", "--contents", deb], capture_output=True,
                                 text=True, check=True, timeout=60).stdout

        def comparable(path):
            # Documented differences: the deb's unit is in /lib (the same
            # directory under merged /usr), and dpkg's changelog and
            # copyright and the lintian overrides are the deb's own.
            return re.sub(r"^/lib/systemd/", "/usr/lib/systemd/", path)

        deb_paths = {}
        for line in listing.splitlines():
            perms, owner, _size, _date, _time, path = line.split(None, 5)
            path = path.removeprefix(".").rstrip("/")
            if path and not path.startswith(("/usr/share/doc/heartwatch/c", "/usr/share/lintian")):
                deb_paths[comparable(path)] = (perms, owner)
        problems = []
        for path, (perms, owner) in sorted(deb_paths.items()):
            full = root + path
            if perms.startswith("d") and "heartwatch" not in path:
                # System directories: the deb only lists them as parents.
                if not os.path.isdir(full):
                    problems.append(f"{path} is not a directory")
                continue
            try:
                st = os.lstat(full)
            except FileNotFoundError:
                problems.append(f"{path} missing")
                continue
            mode = stat.filemode(st.st_mode)
            if mode != perms or (st.st_uid, st.st_gid) != (0, 0):
                problems.append(f"{path} is {mode} {st.st_uid}:{st.st_gid}, the deb's is {perms} {owner}")
        owned = subprocess.run(["rpm", "-qlp", rpm], capture_output=True, text=True,
                               check=True, timeout=60).stdout.split()
        for path in owned:
            if comparable(path) not in deb_paths:
                problems.append(f"{path} is in the rpm, not in the deb")
        wants = os.path.join(root, "etc/systemd/system/multi-user.target.wants/heartwatch.service")
        if not os.path.islink(wants):
            problems.append("%post did not enable heartwatch.service")
        check = subprocess.run(["chroot", root, "/usr/sbin/heartwatch", "check"],
                               capture_output=True, text=True, timeout=60)
        if check.returncode != 0:
            problems.append(f"heartwatch check in the root: exit {check.returncode}: {check.stdout}{check.stderr}")
        if problems:
            raise Failed("; ".join(problems))
        report.ok(name, time.monotonic() - started, f" [{len(deb_paths)} paths as in the deb]")
    except (Failed, subprocess.SubprocessError, OSError) as e:
        report.fail(name, str(e))
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main():
    if os.geteuid() != 0:
        print("tests/system/run must run as root (debootstrap, QEMU, chroot)", file=sys.stderr)
        return 2
    started = time.monotonic()
    workdir = tempfile.mkdtemp(prefix="heartwatch-system.")
    report = Report()
    try:
        ensure_host_packages()
        deb, rpm = build_packages(workdir)
        newer, newer_version = newer_deb(deb, workdir)
        img = image(workdir)
        share = os.path.join(workdir, "share")
        os.makedirs(os.path.join(share, "pkg"))
        os.makedirs(os.path.join(share, "out"))
        shutil.copytree(os.path.join(HERE, "guest"), os.path.join(share, "guest"))
        shutil.copy(deb, os.path.join(share, "pkg", "heartwatch.deb"))
        shutil.copy(newer, os.path.join(share, "pkg", "heartwatch-newer.deb"))
        with open(os.path.join(share, "pkg", "newer-version"), "w") as f:
            f.write(newer_version + "\n")
        only = os.environ.get("HEARTWATCH_SYSTEM_ONLY", "main reboot coexist rpm").split()
        if "rpm" in only:
            rpm_layout(img, deb, rpm, workdir, report)
        if "main" in only:
            main_boot(img, share, workdir, report)
        if "reboot" in only:
            reboot_boot(img, share, workdir, report)
        if "coexist" in only:
            debian_watchdog_deb(os.path.join(share, "pkg"))
            coexist_boot(img, share, workdir, report)
    except (Failed, subprocess.SubprocessError, OSError) as e:
        report.fail("setup", str(e))
    say(f"wall time {time.monotonic() - started:.0f} s")
    if report.failed or os.environ.get("HEARTWATCH_SYSTEM_KEEP"):
        say(f"logs kept in {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"{report.passed} passed, {report.failed} failed", flush=True)
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())
