"""SIGSTOP of heartwatch for longer than the hardware timeout, outside
systemd: nothing feeds the i6300ESB any more and it powers the VM off one
timeout after the last feed. The last line of defence works."""

from trial import Failed, watchdog_conf

NAME = "sigstop-resets"
TIMEOUT = 5
FEED = 1
# Counted from the stop: the last feed was up to FEED before it; the rest
# is the TCG window VM-NOTES measured for kill -9.
EARLIEST, LATEST = TIMEOUT - FEED - 0.5, TIMEOUT + 3

GUEST = f"""
hw_start
hw_wait_log "ready:" 30
sleep 2
vm_mark "STOP state=$(wd_attr watchdog0 state)"
kill -STOP "$HW_PID"
sleep {TIMEOUT * 4}
vm_fail "still running {TIMEOUT * 4} s after SIGSTOP of heartwatch"
"""


def run(trial):
    vm = trial.boot(GUEST, files={"/etc/heartwatch/heartwatch.conf": watchdog_conf(
        timeout=TIMEOUT, feed=FEED)})
    stop = vm.wait_mark("STOP", 40)
    if "state=active" not in stop.text:
        raise Failed(f"watchdog0 not armed before the stop: {stop.text}")
    fired = vm.wait_event("WATCHDOG", LATEST + 5, after=stop.t)
    latency = fired.t - stop.t
    if fired.data.get("action") != "poweroff":
        raise Failed(f"WATCHDOG event with action {fired.data.get('action')}, expected poweroff")
    if not EARLIEST <= latency <= LATEST:
        raise Failed(f"watchdog fired {latency:.2f} s after SIGSTOP, "
                     f"outside [{EARLIEST}, {LATEST}] s")
    vm.expect_exit(0, 10)
    trial.note(f"SIGSTOP -> WATCHDOG poweroff after {latency:.2f} s (timeout {TIMEOUT} s)")
