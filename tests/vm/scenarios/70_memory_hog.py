"""A memory hog takes all the RAM of the VM, again and again, for four
hardware timeouts: the OOM killer ends the hog each time, never heartwatch
(oom_score_adj -1000, as the unit sets it; its memory is locked), and
heartwatch keeps feeding, so the hardware does not reset the live kernel."""

from trial import Failed, watchdog_conf

NAME = "memory-hog"
TIMEOUT = 5
HOG = 4 * TIMEOUT  # seconds

GUEST = f"""
hw_start
hw_wait_log "ready:" 30
echo -1000 >/proc/$HW_PID/oom_score_adj
vm_mark "HOG state=$(wd_attr watchdog0 state) free_kb=$(grep MemFree /proc/meminfo | tr -s ' ' | cut -d' ' -f2)"
end=$(($(cut -d. -f1 /proc/uptime) + {HOG}))
while [ "$(cut -d. -f1 /proc/uptime)" -lt "$end" ]; do
    # Doubles a string until the OOM killer ends it.
    awk 'BEGIN {{ s = "x"; while (1) s = s s }}' 2>/dev/null
done
hw_alive || vm_fail "heartwatch is not running any more"
vm_mark "SURVIVED kills=$(dmesg | grep -c 'Killed process') hw=$(dmesg | grep 'Killed process' | grep -c heartwatch) lock=$(grep VmLck /proc/$HW_PID/status | tr -s ' ' | cut -d' ' -f2)"
vm_done
"""


def run(trial):
    vm = trial.boot(GUEST, files={"/etc/heartwatch/heartwatch.conf": watchdog_conf(
        timeout=TIMEOUT, feed=1)})
    hog = vm.wait_mark("HOG", 40)
    if "state=active" not in hog.text:
        raise Failed(f"watchdog0 not armed: {hog.text}")
    survived = vm.wait_mark("SURVIVED", HOG + 60, after=hog.t)
    fields = dict(f.split("=", 1) for f in survived.text.split()[2:])
    if int(fields["kills"]) < 1:
        raise Failed(f"the hog never took all the memory: {survived.text}")
    if fields["hw"] != "0":
        raise Failed(f"the OOM killer chose heartwatch: {survived.text}")
    if int(fields.get("lock") or 0) == 0:
        raise Failed(f"heartwatch's memory is not locked: {survived.text}")
    vm.expect_exit(1, 10)
    if vm.events_named("WATCHDOG"):
        raise Failed("the watchdog fired while the hog ate the memory")
    trial.note(f"{fields['kills']} OOM kills of the hog in {survived.t - hog.t:.0f} s; "
               f"heartwatch (VmLck {fields['lock']} kB) kept feeding, no WATCHDOG event")
