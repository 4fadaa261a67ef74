"""The wall clock steps 50 years forward, then back to 1970, while two
heartbeat rules are fresh (one touched every second, one not touched but
far from its maximum age). Ages are measured on the monotonic clock, so
no rule fires, no ladder moves and no reboot happens."""

from trial import Failed, watchdog_conf

NAME = "clock-jumps"
TIMEOUT = 5

CONF = watchdog_conf(timeout=TIMEOUT, feed=1) + """
[Daemon]
StartupGrace=0s
[Reboot]
Command=/bin/sh -c 'echo "@@ FAIL heartwatch ran the reboot command" >/dev/console'
Forced=no
"""

RULES = {
    # Touched every second: its modification time jumps with the clock.
    "/etc/heartwatch/rules.d/touched.rule":
        "[Heartbeat]\nFile=/run/touched.beat\nMaxAge=5s\nCheckInterval=500ms\n"
        "[Escalate]\nRepair=/bin/true\nRepairAttempts=1\nFinally=reboot\n",
    # Touched once: 60 s of age left, far more than the test lasts.
    "/etc/heartwatch/rules.d/quiet.rule":
        "[Heartbeat]\nFile=/run/quiet.beat\nMaxAge=60s\nCheckInterval=500ms\n"
        "[Escalate]\nRepair=/bin/true\nRepairAttempts=1\nFinally=reboot\n",
}

GUEST = """
touch /run/touched.beat /run/quiet.beat
(while :; do touch /run/touched.beat; sleep 1; done) &
hw_start
hw_wait_log "rule touched: healthy" 30
hw_wait_log "rule quiet: healthy" 30
sleep 2
vm_mark "FORWARD before=$(date +%s)"
date -s "2076-06-01 12:00:00" >/dev/null || vm_fail "date -s forward failed"
vm_mark "NOW $(date +%s)"
sleep 5
vm_mark "BACK before=$(date +%s)"
date -s "1970-01-02 00:00:00" >/dev/null || vm_fail "date -s back failed"
vm_mark "NOW $(date +%s)"
sleep 5
hw_alive || vm_fail "heartwatch is not running any more"
vm_mark "LOG failing=$(grep -c -e failing -e rebooting -e repair /tmp/heartwatch.log)"
vm_done
"""


def run(trial):
    files = {"/etc/heartwatch/heartwatch.conf": CONF, **RULES}
    vm = trial.boot(GUEST, files=files)
    vm.wait_mark("FORWARD", 60)
    forward = vm.wait_mark("NOW", 10)
    if int(forward.text.split()[-1]) < 3_000_000_000:
        raise Failed(f"the clock did not step forward: {forward.text}")
    vm.wait_mark("BACK", 20)
    back = vm.wait_mark("NOW", 10, after=forward.t + 0.001)
    if int(back.text.split()[-1]) > 200_000:
        raise Failed(f"the clock did not step back to 1970: {back.text}")
    log = vm.wait_mark("LOG", 30)
    if not log.text.endswith("failing=0"):
        raise Failed(f"a rule fired, a ladder moved or a reboot was decided: {log.text}")
    vm.expect_exit(1, 10)
    if vm.events_named("WATCHDOG"):
        raise Failed("the watchdog fired")
    trial.note("clock +50 years, then back to 1970: no rule fired, no repair, no reboot")
