"""Busy loops on every CPU of the VM: heartwatch, under the unit's default
SCHED_OTHER at nice 0 like the loops, still feeds on time. Timeout=2s with
FeedInterval=1s leaves one second of slack, so a feed late by more than a
second ends the VM."""

from trial import Failed, watchdog_conf

NAME = "busy-cpus"
TIMEOUT = 2
BUSY = 20  # seconds of busy loops: ten hardware timeouts

GUEST = f"""
hw_start
hw_wait_log "ready:" 30
cpus=$(grep -c ^processor /proc/cpuinfo)
i=0
while [ "$i" -lt "$cpus" ]; do
    (while :; do :; done) &
    i=$((i + 1))
done
vm_mark "BUSY cpus=$cpus state=$(wd_attr watchdog0 state) policy=$(cut -d' ' -f41 /proc/$HW_PID/stat)"
sleep {BUSY}
hw_alive || vm_fail "heartwatch is not running any more"
vm_mark "SURVIVED state=$(wd_attr watchdog0 state)"
vm_done
"""


def run(trial):
    vm = trial.boot(GUEST, files={"/etc/heartwatch/heartwatch.conf": watchdog_conf(
        timeout=TIMEOUT, feed=1)})
    busy = vm.wait_mark("BUSY", 40)
    if "state=active" not in busy.text:
        raise Failed(f"watchdog0 not armed: {busy.text}")
    if "policy=0" not in busy.text:
        raise Failed(f"heartwatch does not run under SCHED_OTHER: {busy.text}")
    survived = vm.wait_mark("SURVIVED", BUSY + 30, after=busy.t)
    vm.expect_exit(1, 10)
    if vm.events_named("WATCHDOG"):
        raise Failed("the watchdog fired while every CPU was busy")
    trial.note(f"{busy.text.split()[2]}: up {survived.t - busy.t:.1f} s with every CPU "
               f"busy at Timeout={TIMEOUT}s, FeedInterval=1s; no WATCHDOG event")
