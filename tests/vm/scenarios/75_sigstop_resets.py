"""SIGSTOP of heartwatch (no systemd to notice): the i6300ESB fires one timeout later.

A stopped daemon is the hang no supervisor in this guest can see: the process
exists, its descriptor stays open (so the kernel does not even ping on
close, as after kill -9), and nothing feeds. Only the hardware helps.
"""

from trial import Failed, watchdog_conf

NAME = "sigstop-resets"
TIMEOUT = 5
# The last feed came up to one FeedInterval (1 s) before the stop.
EARLIEST, LATEST = TIMEOUT - 1.5, TIMEOUT + 3

GUEST = f"""
hw_start
hw_wait_log "ready:" 30
sleep 2
vm_mark "STOP state=$(wd_attr watchdog0 state)"
kill -STOP "$HW_PID"
read -r _ _ state _ <"/proc/$HW_PID/stat"
vm_mark "STOPPED process=$state"
sleep {TIMEOUT * 4}
vm_fail "still running {TIMEOUT * 4} s after SIGSTOP of heartwatch"
"""


def run(trial):
    vm = trial.boot(GUEST, files={"/etc/heartwatch/heartwatch.conf": watchdog_conf(
        timeout=TIMEOUT, feed=1)})
    stop = vm.wait_mark("STOP", 40)
    if "state=active" not in stop.text:
        raise Failed(f"watchdog0 not armed before the stop: {stop.text}")
    stopped = vm.wait_mark("STOPPED", 5, after=stop.t)
    if "process=T" not in stopped.text:
        raise Failed(f"heartwatch is not in the stopped state (T): {stopped.text}")
    fired = vm.wait_event("WATCHDOG", LATEST + 5, after=stop.t)
    latency = fired.t - stop.t
    if fired.data.get("action") != "poweroff":
        raise Failed(f"WATCHDOG event with action {fired.data.get('action')}, expected poweroff")
    if not EARLIEST <= latency <= LATEST:
        raise Failed(f"watchdog fired {latency:.2f} s after SIGSTOP, "
                     f"outside [{EARLIEST}, {LATEST}] s")
    vm.expect_exit(0, 10)
    trial.note(f"SIGSTOP -> WATCHDOG poweroff after {latency:.2f} s (timeout {TIMEOUT} s, "
               f"last feed up to 1 s before the stop)")
