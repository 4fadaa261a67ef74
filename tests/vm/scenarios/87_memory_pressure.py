"""A [System] rule on memory pressure stall information under a real memory hog.

Debian's kernel has PSI on by default (CONFIG_PSI=y, not
CONFIG_PSI_DEFAULT_DISABLED), so no psi=1 is needed. In a 128 MiB VM the hog
of 85_memory_hog (`cat /dev/zero | tail`, started again and again) drives the
kernel into direct reclaim before each OOM kill: tasks stall on memory, and
/proc/pressure/memory's `some` average rises. The rule must fail with its
cause once it held for For=, and recover once the hog is gone and the
average has sunk back for For=. heartwatch is kept from the OOM killer as
under its unit (oom_score_adj -1000 by hand: no systemd in the guest).
"""

from trial import Failed, watchdog_conf

NAME = "memory-pressure"
TIMEOUT = 5
MEMORY = 128

RULE = """[System]
Pressure=memory
PressureAverage=10s
MaxPressure=5%
CheckInterval=500ms
For=2s
"""

GUEST = """
hw_start
hw_wait_log "ready:" 30
echo -1000 >"/proc/$HW_PID/oom_score_adj"
echo -1000 >"/proc/$HW_TEE_PID/oom_score_adj"
hw_wait_log "rule mempsi: healthy" 30
vm_mark "READY $(cat /proc/pressure/memory | tr '\\n' ' ')"
(while [ ! -e /tmp/stop-hog ]; do cat /dev/zero | tail >/dev/null; done) &
HOG=$!
hw_wait_log "rule mempsi: failing: memory pressure some avg10" 120
vm_mark "PRESSED $(cat /proc/pressure/memory | tr '\\n' ' ')"
touch /tmp/stop-hog
wait "$HOG"
vm_mark "HOG-GONE"
hw_wait_log "rule mempsi: healthy again" 120
vm_mark "RELIEVED $(cat /proc/pressure/memory | tr '\\n' ' ')"
hw_alive || vm_fail "heartwatch is not running any more"
vm_done
"""


def run(trial):
    conf = watchdog_conf(timeout=TIMEOUT, feed=1) + "[Daemon]\nStartupGrace=0s\n"
    vm = trial.boot(GUEST, files={
        "/etc/heartwatch/heartwatch.conf": conf,
        "/etc/heartwatch/rules.d/mempsi.rule": RULE,
    }, memory=MEMORY, budget=400)
    ready = vm.wait_mark("READY", 60)
    failing = vm.wait_line("rule mempsi: failing: memory pressure some avg10", 150, after=ready.t)
    if "above 5% for 2s" not in failing.text:
        raise Failed(f"the cause does not say the threshold and For=: {failing.text}")
    pressed = vm.wait_mark("PRESSED", 10, after=failing.t)
    gone = vm.wait_mark("HOG-GONE", 60, after=pressed.t)
    healthy = vm.wait_line("rule mempsi: healthy again", 150, after=gone.t)
    relieved = vm.wait_mark("RELIEVED", 10, after=healthy.t)
    vm.expect_exit(1, 20)
    if vm.events_named("WATCHDOG"):
        raise Failed("the watchdog fired under memory pressure")
    trial.note(f"failing {failing.t - ready.t:.1f} s after the hog started: "
               f"{failing.text.split('failing: ')[-1]}")
    trial.note(f"healthy again {healthy.t - gone.t:.1f} s after the hog was gone; "
               f"before: {ready.text[9:]}; under: {pressed.text[11:]}; after: {relieved.text[12:]}")
