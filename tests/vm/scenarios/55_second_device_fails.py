"""Device=/dev/watchdog0 /dev/watchdog1 with the second one failing to open:
heartwatch exits with the failure, and the i6300ESB it had already opened
(and so armed) is disarmed, so it never fires.

Boot 1: softdog is not loaded, so /dev/watchdog1 does not exist. Boot 2:
softdog is loaded (soft_noboot=1, so that it could never end the VM) and
another process holds /dev/watchdog1 open and feeds it, so heartwatch's
open gets EBUSY. Each boot waits more than two timeouts after heartwatch
exited: no WATCHDOG event, the i6300ESB is `inactive`, and heartwatch
said at critical priority what it did and what to do.
"""

from trial import Failed, watchdog_conf

NAME = "second-device-fails"
TIMEOUT = 5
AFTER = 2 * TIMEOUT + 2  # seconds the guest stays up after heartwatch exited
CRITICAL = "heartwatch: critical: watchdog /dev/watchdog0: disarmed (magic close)"

RUN = f"""
hw_start
wait "$HW_PID"
vm_mark "EXITED status=$? wd0=$(wd_attr watchdog0 state)"
sleep {AFTER}
vm_mark "SURVIVED wd0=$(wd_attr watchdog0 state)"
"""

MISSING = f"""
[ -e /dev/watchdog1 ] && vm_fail "/dev/watchdog1 exists"
{RUN}
vm_done
"""

# The holder feeds softdog every second and disarms it with the magic
# close when told to stop, so neither it nor softdog can end the VM.
BUSY = f"""
(
	exec 3>/dev/watchdog1 || exit 1
	trap 'printf V >&3; exit 0' TERM
	while :; do printf x >&3; sleep 1; done
) &
HOLDER=$!
sleep 1
vm_mark "HELD wd1=$(wd_attr watchdog1 state) $(wd_attr watchdog1 identity)"
{RUN}
kill -0 "$HOLDER" || vm_fail "the process holding /dev/watchdog1 died"
kill -TERM "$HOLDER"
wait "$HOLDER"
vm_mark "RELEASED wd1=$(wd_attr watchdog1 state)"
vm_done
"""


def fails_safely(vm, why):
    """Waits for heartwatch's exit and the time after it; returns a note."""
    exited = vm.wait_mark("EXITED", 40)
    try:
        survived = vm.wait_mark("SURVIVED", AFTER + 20, after=exited.t)
    except Failed:
        fired = vm.events_named("WATCHDOG")
        if fired:
            raise Failed(f"{why}: the i6300ESB fired {fired[0].t - exited.t:.2f} s after "
                         f"heartwatch exited: the failed start left it armed ({exited.text})")
        raise
    if vm.events_named("WATCHDOG"):
        raise Failed(f"{why}: a WATCHDOG event after heartwatch exited")
    if "status=1 " not in exited.text or "wd0=inactive" not in exited.text:
        raise Failed(f"{why}: expected exit status 1 and watchdog0 inactive: {exited.text}")
    if "wd0=inactive" not in survived.text:
        raise Failed(f"{why}: watchdog0 not inactive at the end: {survived.text}")
    critical = vm.wait_line(CRITICAL, 1)
    if "restart heartwatch" not in critical.text:
        raise Failed(f"{why}: the critical line does not say what to do: {critical.text}")
    up = survived.t - exited.t
    if up < 2 * TIMEOUT:
        raise Failed(f"{why}: guest reported survival after only {up:.1f} s")
    return f"{why}: exit 1, critical line, watchdog0 inactive, up {up:.1f} s (> 2 x {TIMEOUT} s)"


def run(trial):
    conf = watchdog_conf(device="/dev/watchdog0 /dev/watchdog1", timeout=TIMEOUT, feed=1)
    files = {"/etc/heartwatch/heartwatch.conf": conf}

    vm = trial.boot(MISSING, modules=["i6300esb"], files=files)
    vm.wait_line("watchdog /dev/watchdog1: no such device", 40)
    trial.note(fails_safely(vm, "watchdog1 missing"))
    vm.expect_exit(1, 10)

    vm = trial.boot(BUSY, modules=["i6300esb", "softdog soft_noboot=1"], files=files)
    held = vm.wait_mark("HELD", 40)
    if "wd1=active" not in held.text or "Software Watchdog" not in held.text:
        raise Failed(f"expected softdog held and armed by the guest: {held.text}")
    vm.wait_line("watchdog /dev/watchdog1: busy", 40, after=held.t)
    note = fails_safely(vm, "watchdog1 busy")
    released = vm.wait_mark("RELEASED", 10)
    if "wd1=inactive" not in released.text:
        raise Failed(f"the holder did not disarm softdog: {released.text}")
    if any("softdog: Triggered" in line.text for line in vm.lines):
        raise Failed("softdog fired while the guest held it")
    vm.expect_exit(1, 10)
    trial.note(note)
