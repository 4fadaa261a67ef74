"""Two devices, the i6300ESB and softdog, both fed; after kill -9 both fire.

So that both expiries can be seen in one run, neither ends the VM: QEMU's
watchdog action is `none` (the WATCHDOG event still comes) and softdog is
loaded with soft_noboot=1 (it logs "Triggered - Reboot ignored" instead of
rebooting). That either one ends the VM is what kill9-resets proves.
"""

from trial import Failed, expect_status, watchdog_conf

NAME = "softdog"
TIMEOUT = 5
LIVES = 3 * TIMEOUT + 2
EARLIEST, LATEST = TIMEOUT - 0.5, TIMEOUT + 3
SOFTDOG_FIRED = "softdog: Triggered - Reboot ignored"

GUEST = f"""
states() {{
	echo "wd0=$(wd_attr watchdog0 state)/$(wd_attr watchdog0 timeout)" \\
		"wd1=$(wd_attr watchdog1 state)/$(wd_attr watchdog1 timeout)"
}}
hw_start
hw_wait_log "ready:" 30
vm_mark "READY $(states) wd1 is $(wd_attr watchdog1 identity)"
hw_status
sleep {LIVES}
hw_alive || vm_fail "heartwatch is not running any more"
vm_mark "FED $(states)"
vm_mark KILL
kill -9 "$HW_PID"
sleep {LATEST + 3}
vm_mark "AFTER $(states)"
vm_done
"""


def run(trial):
    conf = watchdog_conf(device="/dev/watchdog0 /dev/watchdog1", timeout=TIMEOUT, feed=1)
    vm = trial.boot(GUEST, modules=["i6300esb", "softdog soft_noboot=1"], action="none",
                    files={"/etc/heartwatch/heartwatch.conf": conf})
    armed = f"wd0=active/{TIMEOUT} wd1=active/{TIMEOUT}"
    ready = vm.wait_mark("READY", 40)
    if armed not in ready.text or "Software Watchdog" not in ready.text:
        raise Failed(f"expected i6300ESB and softdog both armed at {TIMEOUT} s: {ready.text}")
    expect_status(vm, ready.t, [f'watchdog /dev/watchdog0 "i6300ESB timer": timeout {TIMEOUT}s',
                                f'watchdog /dev/watchdog1 "Software Watchdog": timeout {TIMEOUT}s'])

    fed = vm.wait_mark("FED", LIVES + 20, after=ready.t)
    if fed.t - ready.t < 3 * TIMEOUT or armed not in fed.text:
        raise Failed(f"after {fed.t - ready.t:.1f} s: {fed.text}")
    early = vm.events_named("WATCHDOG") + [l for l in vm.lines if SOFTDOG_FIRED in l.text]
    if early:
        raise Failed(f"a watchdog fired while heartwatch was feeding both: {early[0]}")

    kill = vm.wait_mark("KILL", 5, after=fed.t)
    hardware = vm.wait_event("WATCHDOG", LATEST + 5, after=kill.t)
    software = vm.wait_line(SOFTDOG_FIRED, LATEST + 5, after=kill.t)
    latencies = {"i6300ESB": hardware.t - kill.t, "softdog": software.t - kill.t}
    for device, latency in latencies.items():
        if not EARLIEST <= latency <= LATEST:
            raise Failed(f"{device} fired {latency:.2f} s after kill -9, "
                         f"outside [{EARLIEST}, {LATEST}] s")
    vm.expect_exit(1, LATEST + 15)
    trial.note(f"both fed for {fed.t - ready.t:.1f} s; after kill -9 i6300ESB fired in "
               f"{latencies['i6300ESB']:.2f} s, softdog in {latencies['softdog']:.2f} s")
