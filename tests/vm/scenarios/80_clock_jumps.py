"""Wall-clock jumps (50 years forward, then back to 1970) fire no heartbeat rule.

Two heartbeat rules, MaxAge=5s, each file touched every second by a guest
loop: `fresh` (repair writes a marker, then Finally=reboot) and `control`
(repair writes a marker, then log). The wall clock is stepped with `date -s`
to 2076 and later to 1970, with a wait longer than MaxAge after each step.
No rule may fail, no repair run, nothing reboot: heartwatch ages heartbeats
on the monotonic clock from the moment it saw their modification time
change. Then the control: the `control` writer stops, and that rule must go
stale within MaxAge (plus a check interval and the writer's last second),
and its repair must run, so the scenario can tell a working detector from
one that never fires.
"""

from trial import Failed, watchdog_conf

NAME = "clock-jumps"
TIMEOUT = 5
MAX_AGE = 5
WAIT = MAX_AGE + 3  # seconds after each jump

CONF = watchdog_conf(timeout=TIMEOUT, feed=1) + """
[Daemon]
StartupGrace=1s

[Reboot]
Command=/bin/busybox reboot -f
OrderlyTimeout=2s
"""


def rule(name, finally_):
    return f"""[Heartbeat]
File=/run/{name}.beat
MaxAge={MAX_AGE}s

[Escalate]
Repair=/bin/sh /etc/vm/mark.sh {name}
RepairAttempts=1
RepairBackoff=200ms
Finally={finally_}
"""


GUEST = f"""
beat() {{
	while :; do
		touch "/run/$1.beat"
		sleep 1
	done
}}
touch /run/fresh.beat /run/control.beat
beat fresh &
beat control &
CONTROL=$!
hw_start
hw_wait_log "ready:" 30
sleep 3
vm_mark "FORWARD from $(date +%s)"
date -s "2076-11-24 12:00:00" >/dev/null || vm_fail "date -s 2076 failed"
vm_mark "FORWARD now=$(date +%Y)"
sleep {WAIT}
vm_mark "BACK"
date -s "1970-01-02 00:00:00" >/dev/null || vm_fail "date -s 1970 failed"
vm_mark "BACK now=$(date +%Y)"
sleep {WAIT}
hw_status
[ -e /tmp/repairs ] && vm_fail "a repair ran after the clock jumps: $(cat /tmp/repairs)"
vm_mark "CONTROL stopping its writer"
kill "$CONTROL"
hw_wait_log "rule control: failing" {MAX_AGE + 10}
tries=50
until [ -e /tmp/repairs ]; do
	tries=$((tries - 1))
	[ "$tries" -gt 0 ] || vm_fail "rule control failed but its repair left no marker"
	sleep 0.2
done
hw_alive || vm_fail "heartwatch is not running any more"
vm_mark "REPAIRS $(cat /tmp/repairs)"
vm_done
"""


def run(trial):
    vm = trial.boot(GUEST, files={
        "/etc/heartwatch/heartwatch.conf": CONF,
        "/etc/heartwatch/rules.d/fresh.rule": rule("fresh", "reboot"),
        "/etc/heartwatch/rules.d/control.rule": rule("control", "log"),
        "/etc/vm/mark.sh": 'echo "$1" >>/tmp/repairs\n',
    })
    forward = vm.wait_mark("FORWARD now=", 40)
    if "now=2076" not in forward.text:
        raise Failed(f"the clock did not jump to 2076: {forward.text}")
    back = vm.wait_mark("BACK now=", WAIT + 15, after=forward.t)
    if "now=1970" not in back.text:
        raise Failed(f"the clock did not go back to 1970: {back.text}")
    control = vm.wait_mark("CONTROL", WAIT + 15, after=back.t)
    quiet = [l.text for l in vm.lines if l.t <= control.t and
             ("failing" in l.text or "repair" in l.text or "rebooting" in l.text)
             and not l.text.startswith(("status|", "@@"))]
    if quiet:
        raise Failed(f"a rule fired across the clock jumps: {quiet[0]}")
    shown = vm.lines_between("status| ", back.t, control.t)
    for name in ("fresh", "control"):
        if not any(l.split()[1:3] == [name, "healthy"] for l in shown):
            raise Failed(f"`heartwatch status` does not show {name} healthy:\n    "
                         + "\n    ".join(shown))

    failing = vm.wait_line("rule control: failing: stale", MAX_AGE + 10, after=control.t)
    latency = failing.t - control.t
    # The writer's last touch came up to 1 s before it was stopped; the
    # check interval is MaxAge/10.
    if not MAX_AGE - 1.5 <= latency <= MAX_AGE + 3:
        raise Failed(f"rule control failed {latency:.2f} s after its writer stopped, "
                     f"expected about MaxAge={MAX_AGE}s")
    repairs = vm.wait_mark("REPAIRS", 15, after=failing.t)
    if repairs.text.split()[2:] != ["control"]:
        raise Failed(f"expected exactly the control rule's repair: {repairs.text}")
    vm.expect_exit(1, 10)
    if vm.events_named("WATCHDOG") or [l for l in vm.lines if "rebooting" in l.text]:
        raise Failed("the watchdog fired or heartwatch rebooted")
    trial.note(f"clock +50 years, then back to 1970, {WAIT} s (> MaxAge={MAX_AGE}s) after "
               f"each: no rule failed, no repair, no reboot")
    trial.note(f"control: writer stopped -> rule control failing after {latency:.2f} s "
               f"and its repair ran")
