"""A stale heartbeat climbs the whole ladder: repairs, then each step of the reboot path.

The rule `app` watches a heartbeat nobody touches after start-up (MaxAge=2s);
its repair appends a line to a file on the host share and exits 0 without
fixing anything; after RepairAttempts=2 the ladder reboots. The guest has no
systemd: `[Reboot] Command=/bin/busybox reboot` is an orderly reboot that
does nothing here (busybox signals PID 1, a shell that ignores it), which is
what a hung `systemctl reboot` looks like, so the later steps are reached:

- boot 1, Forced=yes: after OrderlyTimeout=2s heartwatch calls reboot(2),
  and the VM resets without the watchdog;
- boot 2, Forced=no (reboot(2) "impossible"): heartwatch stops feeding and
  the i6300ESB resets the VM one timeout later (a WATCHDOG event);
- boot 3: heartwatch reports both reboots.

StateDirectory= is on the host share, so the reason and the budget survive
the resets; each boot checks what `heartwatch status` shows about the one
before.
"""

import os

from trial import Failed, expect_status, watchdog_conf

NAME = "ladder-reboot"
TIMEOUT = 5
ORDERLY = 2  # OrderlyTimeout, seconds
ATTEMPTS = 2
# Feeding stops up to one FeedInterval (1 s) after the last feed; the
# hardware fires one timeout after that feed (VM-NOTES' TCG window).
EARLIEST, LATEST = TIMEOUT - 1.5, TIMEOUT + 3


def conf(forced):
    return watchdog_conf(timeout=TIMEOUT, feed=1) + f"""
[Daemon]
StartupGrace=1s
StateDirectory=/mnt/host/state

[Reboot]
Budget=3
Command=/bin/busybox reboot
OrderlyTimeout={ORDERLY}s
Forced={'yes' if forced else 'no'}
"""


RULE = f"""[Heartbeat]
File=/run/app.beat
MaxAge=2s

[Escalate]
Repair=/bin/sh /etc/vm/repair.sh
RepairAttempts={ATTEMPTS}
RepairTimeout=5s
RepairBackoff=200ms
Finally=reboot
"""

# Leaves a trace on the host and "succeeds" without touching the heartbeat.
REPAIR = """read -r up _ </proc/uptime
read -r boot </mnt/host/boots
echo "boot=$boot uptime=$up" >>/mnt/host/repairs
"""

GUEST = """
vm_mount_host
vm_count_boot
mkdir -p /mnt/host/state
case $BOOT in
1) cp /etc/vm/forced.conf /etc/heartwatch/heartwatch.conf ;;
*) cp /etc/vm/unforced.conf /etc/heartwatch/heartwatch.conf ;;
esac
vm_mark "BOOT $BOOT"
touch /run/app.beat
hw_start
hw_wait_log "ready:" 30
hw_status
[ "$BOOT" -ge 3 ] && vm_done
sleep 40
vm_fail "boot $BOOT: still up 40 s after heartwatch was ready"
"""


def not_between(vm, text, start, end):
    seen = [l for l in vm.lines if start <= l.t <= end and text in l.text]
    if seen:
        raise Failed(f"unexpected {seen[0].text!r}")


def run(trial):
    vm = trial.boot(GUEST, files={
        "/etc/vm/forced.conf": conf(True),
        "/etc/vm/unforced.conf": conf(False),
        "/etc/heartwatch/rules.d/app.rule": RULE,
        "/etc/vm/repair.sh": REPAIR,
    }, action="reset", reboot=True, share=True, budget=150)

    # Boot 1: stale -> 2 repairs -> orderly command (does nothing) -> reboot(2).
    boot1 = vm.wait_mark("BOOT 1", 40)
    ready = vm.wait_line("heartwatch: ready:", 30, after=boot1.t)
    expect_status(vm, boot1.t, ["last reboot by heartwatch: none recorded",
                              "reboot budget: 0 of 3 used"])
    failing = vm.wait_line("rule app: failing: stale", 20, after=boot1.t)
    decided = vm.wait_line("rebooting: rule app: stale", 20, after=failing.t)
    vm.wait_line("orderly reboot: running `/bin/busybox reboot`", 5, after=decided.t)
    forced = vm.wait_line("the orderly reboot did not happen in time; calling reboot(2)",
                          ORDERLY + 10, after=decided.t)
    boot2 = vm.wait_mark("BOOT 2", 40, after=forced.t)
    not_between(vm, "stopped feeding the watchdog", decided.t, boot2.t)
    if vm.events_named("WATCHDOG"):
        raise Failed("the watchdog fired although reboot(2) was allowed")
    if not [e for e in vm.events_named("RESET") if forced.t <= e.t <= boot2.t]:
        raise Failed("no QMP RESET event between reboot(2) and the second boot")
    orderly_wait = forced.t - decided.t
    if not ORDERLY - 0.5 <= orderly_wait <= ORDERLY + 3:
        raise Failed(f"reboot(2) came {orderly_wait:.2f} s after the decision, "
                     f"expected about OrderlyTimeout={ORDERLY}s")
    trial.note(f"boot 1: failing (stale) {failing.t - ready.t:.2f} s after `ready:` (MaxAge=2s); "
               f"{ATTEMPTS} repairs; reboot decided {decided.t - failing.t:.2f} s after "
               f"failing; reboot(2) {orderly_wait:.2f} s after the decision "
               f"(OrderlyTimeout={ORDERLY}s); next /init {boot2.t - forced.t:.2f} s later")

    # Boot 2: the reason survived; Forced=no -> the feed stops -> the hardware resets.
    expect_status(vm, boot2.t, ["last reboot by heartwatch: rule app: stale",
                              f"(after {ATTEMPTS} repair attempts)",
                              "reboot budget: 1 of 3 used"])
    decided2 = vm.wait_line("rebooting: rule app: stale", 20, after=boot2.t)
    vm.wait_line("Forced=no: not calling reboot(2)", ORDERLY + 10, after=decided2.t)
    stopped = vm.wait_line("stopped feeding the watchdog", 5, after=decided2.t)
    fired = vm.wait_event("WATCHDOG", LATEST + 5, after=stopped.t)
    latency = fired.t - stopped.t
    if not EARLIEST <= latency <= LATEST:
        raise Failed(f"watchdog fired {latency:.2f} s after the feed stopped, "
                     f"outside [{EARLIEST}, {LATEST}] s")
    if fired.data.get("action") != "reset":
        raise Failed(f"WATCHDOG event with action {fired.data.get('action')}, expected reset")
    trial.note(f"boot 2: Forced=no -> feed stopped {stopped.t - decided2.t:.2f} s after the "
               f"decision -> WATCHDOG reset {latency:.2f} s later (timeout {TIMEOUT} s)")

    # Boot 3: both reboots are on record.
    boot3 = vm.wait_mark("BOOT 3", 40, after=fired.t)
    expect_status(vm, boot3.t, ["last reboot by heartwatch: rule app: stale",
                              "reboot budget: 2 of 3 used",
                              "boot: last reset was caused by the watchdog"])
    vm.expect_exit(1, 20)

    with open(os.path.join(trial.share, "repairs")) as f:
        repairs = f.read().split()
    per_boot = [sum(1 for r in repairs if r == f"boot={b}") for b in (1, 2)]
    if per_boot != [ATTEMPTS, ATTEMPTS]:
        raise Failed(f"expected {ATTEMPTS} repairs on boots 1 and 2, the share says "
                     f"{per_boot}: {repairs}")
    trial.note(f"repair ran {ATTEMPTS} times before each reboot; on the next boots "
               f"`status` showed the reason and the budget (1, then 2 of 3)")
