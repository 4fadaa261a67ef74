"""heartwatch keeps the i6300ESB fed: the VM outlives three hardware timeouts."""

from trial import Failed, expect_status, watchdog_conf

NAME = "feeds"
TIMEOUT = 5
LIVES = 3 * TIMEOUT + 2  # seconds the guest waits after heartwatch is ready

GUEST = f"""
hw_start
hw_wait_log "ready:" 30
vm_mark "READY state=$(wd_attr watchdog0 state) timeout=$(wd_attr watchdog0 timeout)"
hw_status
sleep {LIVES}
hw_alive || vm_fail "heartwatch is not running any more"
vm_mark "SURVIVED state=$(wd_attr watchdog0 state)"
vm_done
"""


def run(trial):
    vm = trial.boot(GUEST, files={"/etc/heartwatch/heartwatch.conf": watchdog_conf(
        timeout=TIMEOUT, feed=1)})
    ready = vm.wait_mark("READY", 40)
    # Without an armed watchdog, surviving would prove nothing.
    if "state=active" not in ready.text or f"timeout={TIMEOUT}" not in ready.text:
        raise Failed(f"watchdog0 not armed at {TIMEOUT} s once heartwatch was ready: {ready.text}")
    expect_status(vm, ready.t, [f'watchdog /dev/watchdog0 "i6300ESB timer": timeout {TIMEOUT}s'])
    survived = vm.wait_mark("SURVIVED", LIVES + 20, after=ready.t)
    up = survived.t - ready.t
    if up < 3 * TIMEOUT:
        raise Failed(f"guest reported survival after only {up:.1f} s")
    if "state=active" not in survived.text:
        raise Failed(f"watchdog0 no longer armed: {survived.text}")
    vm.expect_exit(1, 10)
    if vm.events_named("WATCHDOG"):
        raise Failed("the watchdog fired although heartwatch was feeding it")
    trial.note(f"up {up:.1f} s (> 3 x {TIMEOUT} s) with heartwatch feeding, no WATCHDOG event")
