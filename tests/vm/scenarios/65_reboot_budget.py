"""A rule that can never recover, Budget=2: two reboots, then heartwatch stays up.

The rule `never` watches a heartbeat file that never exists. Its ladder
repairs once and then reboots; `[Reboot] Command=/bin/busybox reboot -f` is
an orderly reboot that works here (busybox syncs and calls reboot(2) itself),
so these reboots never reach heartwatch's own reboot(2). StateDirectory= and
a boot counter are on the host share. The VM must reboot exactly twice;
on the third boot heartwatch logs `reboot suppressed` (critical), goes on
feeding for more than three hardware timeouts without a WATCHDOG event, keeps
repairing, and `heartwatch status` says REBOOT SUPPRESSED.
"""

import os

from trial import Failed, expect_status, watchdog_conf

NAME = "reboot-budget"
TIMEOUT = 5
BUDGET = 2
LIVES = 3 * TIMEOUT + 2  # seconds the third boot stays up after the suppression

CONF = watchdog_conf(timeout=TIMEOUT, feed=1) + f"""
[Daemon]
StartupGrace=1s
StateDirectory=/mnt/host/state

[Reboot]
Budget={BUDGET}
Command=/bin/busybox reboot -f
OrderlyTimeout=5s
"""

RULE = """[Heartbeat]
File=/run/never.beat
MaxAge=2s

[Escalate]
Repair=/bin/sh /etc/vm/repair.sh
RepairAttempts=1
RepairTimeout=5s
RepairBackoff=200ms
RepairBackoffMax=4s
Finally=reboot
"""

REPAIR = """read -r boot </mnt/host/boots
echo "boot=$boot" >>/mnt/host/repairs
"""

GUEST = f"""
vm_mount_host
vm_count_boot
mkdir -p /mnt/host/state
vm_mark "BOOT $BOOT"
hw_start
hw_wait_log "ready:" 30
if [ "$BOOT" -le {BUDGET} ]; then
	sleep 40
	vm_fail "boot $BOOT: still up 40 s after heartwatch was ready"
fi
hw_wait_status "REBOOT SUPPRESSED" 30
vm_mark "SUPPRESSED state=$(wd_attr watchdog0 state)"
sleep {LIVES}
hw_alive || vm_fail "heartwatch is not running any more"
hw_status
vm_mark "SURVIVED state=$(wd_attr watchdog0 state)"
vm_done
"""


def run(trial):
    vm = trial.boot(GUEST, files={
        "/etc/heartwatch/heartwatch.conf": CONF,
        "/etc/heartwatch/rules.d/never.rule": RULE,
        "/etc/vm/repair.sh": REPAIR,
    }, action="reset", reboot=True, share=True, budget=150)

    after = 0.0
    reboots = []
    for n in range(1, BUDGET + 1):
        boot = vm.wait_mark(f"BOOT {n}", 40, after=after)
        ready = vm.wait_line("heartwatch: ready:", 30, after=boot.t)
        decided = vm.wait_line(f"rebooting: rule never:", 20, after=ready.t)
        vm.wait_line("orderly reboot: running `/bin/busybox reboot -f`", 5, after=decided.t)
        following = vm.wait_mark(f"BOOT {n + 1}", 40, after=decided.t)
        forced = [l for l in vm.lines if decided.t <= l.t <= following.t
                  and "calling reboot(2)" in l.text]
        if forced:
            raise Failed(f"boot {n}: the orderly command did not reboot; heartwatch had to: "
                         f"{forced[0].text}")
        reboots.append((decided.t - ready.t, following.t - decided.t))
        after = following.t

    third = vm.wait_mark(f"BOOT {BUDGET + 1}", 1, after=after)
    suppressed_log = vm.wait_line("reboot suppressed", 30, after=third.t)
    wanted = f"{BUDGET} reboots without a healthy period (Budget={BUDGET})"
    if "critical" not in suppressed_log.text or wanted not in suppressed_log.text:
        raise Failed(f"expected a critical `reboot suppressed` line saying {wanted!r}: "
                     f"{suppressed_log.text}")
    suppressed = vm.wait_mark("SUPPRESSED", 10, after=third.t)
    if "state=active" not in suppressed.text:
        raise Failed(f"watchdog0 not armed when the reboot was suppressed: {suppressed.text}")
    survived = vm.wait_mark("SURVIVED", LIVES + 20, after=suppressed.t)
    up = survived.t - suppressed.t
    if up < 3 * TIMEOUT or "state=active" not in survived.text:
        raise Failed(f"after {up:.1f} s: {survived.text}")
    expect_status(vm, suppressed.t, ["REBOOT SUPPRESSED",
                                     f"reboot budget: {BUDGET} of {BUDGET} used"])
    vm.expect_exit(1, 20)

    if vm.events_named("WATCHDOG"):
        raise Failed("the watchdog fired; every reboot should have been an orderly one")
    late = [e for e in vm.events_named("RESET") if e.t > third.t]
    if late or [l for l in vm.lines if l.text.startswith(f"@@ BOOT {BUDGET + 2}")]:
        raise Failed(f"the VM was reset after boot {BUDGET + 1}, past the budget")
    with open(os.path.join(trial.share, "boots")) as f:
        boots = f.read().strip()
    if boots != str(BUDGET + 1):
        raise Failed(f"the share counted {boots} boots, expected {BUDGET + 1}")
    with open(os.path.join(trial.share, "repairs")) as f:
        repairs = f.read().split()
    per_boot = [repairs.count(f"boot={b}") for b in range(1, BUDGET + 2)]
    if per_boot[:BUDGET] != [1] * BUDGET or per_boot[BUDGET] < 2:
        raise Failed(f"repairs per boot {per_boot}: expected 1 before each reboot and "
                     f"several after the suppression (repairing goes on)")

    trial.note(f"{BUDGET} reboots: " + "; ".join(
        f"decided {d:.2f} s after `ready:`, next /init {b:.2f} s later" for d, b in reboots)
        + " (orderly: busybox reboot -f)")
    trial.note(f"boot {BUDGET + 1}: reboot suppressed (critical); up {up:.1f} s "
               f"(> 3 x {TIMEOUT} s) after it, armed, no WATCHDOG event; "
               f"{per_boot[BUDGET]} more repairs; status: REBOOT SUPPRESSED")
