"""kill -9 of heartwatch: the i6300ESB powers the VM off one timeout later."""

from trial import Failed, watchdog_conf

NAME = "kill9-resets"
TIMEOUT = 5
# The window VM-NOTES measured under TCG, counted from the kill (the kernel
# pings once when the killed process's descriptor is closed).
EARLIEST, LATEST = TIMEOUT - 0.5, TIMEOUT + 3

GUEST = f"""
hw_start
hw_wait_log "ready:" 30
sleep 2
vm_mark "KILL state=$(wd_attr watchdog0 state)"
kill -9 "$HW_PID"
sleep {TIMEOUT * 4}
vm_fail "still running {TIMEOUT * 4} s after kill -9 of heartwatch"
"""


def run(trial):
    vm = trial.boot(GUEST, files={"/etc/heartwatch/heartwatch.conf": watchdog_conf(
        timeout=TIMEOUT, feed=1)})
    kill = vm.wait_mark("KILL", 40)
    if "state=active" not in kill.text:
        raise Failed(f"watchdog0 not armed before the kill: {kill.text}")
    fired = vm.wait_event("WATCHDOG", LATEST + 5, after=kill.t)
    latency = fired.t - kill.t
    if fired.data.get("action") != "poweroff":
        raise Failed(f"WATCHDOG event with action {fired.data.get('action')}, expected poweroff")
    if not EARLIEST <= latency <= LATEST:
        raise Failed(f"watchdog fired {latency:.2f} s after kill -9, "
                     f"outside [{EARLIEST}, {LATEST}] s")
    vm.expect_exit(0, 10)
    trial.note(f"kill -9 -> WATCHDOG poweroff after {latency:.2f} s (timeout {TIMEOUT} s)")
