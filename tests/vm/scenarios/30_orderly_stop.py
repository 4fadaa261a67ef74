"""SIGTERM: heartwatch disarms the i6300ESB with the magic close; the VM stays up."""

from trial import Failed, watchdog_conf

NAME = "orderly-stop"
TIMEOUT = 5
AFTER = 2 * TIMEOUT + 2  # seconds the guest stays up after heartwatch stopped

GUEST = f"""
hw_start
hw_wait_log "ready:" 30
sleep 2
vm_mark TERM
kill -TERM "$HW_PID"
wait "$HW_PID"
vm_mark "EXITED status=$? state=$(wd_attr watchdog0 state)"
sleep {AFTER}
vm_mark "SURVIVED state=$(wd_attr watchdog0 state)"
vm_done
"""


def run(trial):
    vm = trial.boot(GUEST, files={"/etc/heartwatch/heartwatch.conf": watchdog_conf(
        timeout=TIMEOUT, feed=1)})
    term = vm.wait_mark("TERM", 40)
    vm.wait_line("watchdog /dev/watchdog0: disarmed (magic close)", 10, after=term.t)
    vm.wait_line("heartwatch: stopped", 5, after=term.t)
    exited = vm.wait_mark("EXITED", 10, after=term.t)
    if "status=0 " not in exited.text or "state=inactive" not in exited.text:
        raise Failed(f"expected exit status 0 and watchdog0 inactive: {exited.text}")
    survived = vm.wait_mark("SURVIVED", AFTER + 20, after=exited.t)
    up = survived.t - exited.t
    if up < 2 * TIMEOUT:
        raise Failed(f"guest reported survival after only {up:.1f} s")
    vm.expect_exit(1, 10)
    if vm.events_named("WATCHDOG"):
        raise Failed("the watchdog fired after heartwatch's orderly stop")
    trial.note(f"magic close logged; up {up:.1f} s (> 2 x {TIMEOUT} s) after the stop, "
               f"no WATCHDOG event")
