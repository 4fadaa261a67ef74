"""After an i6300ESB reset, heartwatch reports that the watchdog caused it.

QEMU resets the VM (-action watchdog=reset) instead of ending; a file on a
host share counts the boots, so each boot knows which it is. The driver's
own view (sysfs bootstatus, WDIOF_CARDRESET = 0x20) is checked beside
what `heartwatch status` shows on every boot (and, after the reset, its log
line and the `watchdog-reset` entry of its reboot history). A third boot, after a plain `reboot -f`, is the control: not a
watchdog reset, and neither the driver nor heartwatch may say it was.
"""

from trial import Failed, expect_status, watchdog_conf

NAME = "bootstatus-after-reset"
TIMEOUT = 5
WDIOF_CARDRESET = 0x20
CAUSED = "boot: last reset was caused by the watchdog"
NOT_CAUSED = "boot: last reset was not caused by the watchdog"
HISTORY_RESET = "watchdog    watchdog /dev/watchdog0: last reset was caused by the watchdog"

GUEST = f"""
vm_mount_host
boot=$(cat /mnt/host/boots 2>/dev/null || echo 0)
boot=$((boot + 1))
echo "$boot" >/mnt/host/boots
sync
vm_mark "BOOT $boot bootstatus=$(wd_attr watchdog0 bootstatus)"
hw_start
hw_wait_log "ready:" 30
hw_status
case $boot in
1)
	vm_mark KILL
	kill -9 "$HW_PID"
	sleep {TIMEOUT * 4}
	vm_fail "no reset {TIMEOUT * 4} s after kill -9 of heartwatch"
	;;
2)
	vm_mark REBOOT
	reboot -f
	sleep 20
	vm_fail "reboot -f did not reboot"
	;;
esac
vm_done
"""


def bootstatus(line):
    value = line.text.rsplit("bootstatus=", 1)[1].strip()
    try:
        return int(value, 0)
    except ValueError:
        raise Failed(f"cannot read the driver's bootstatus: {line.text}") from None


def run(trial):
    vm = trial.boot(GUEST, files={"/etc/heartwatch/heartwatch.conf": watchdog_conf(
        timeout=TIMEOUT, feed=1)}, action="reset", reboot=True, share=True, budget=120)

    first = vm.wait_mark("BOOT 1 ", 40)
    if bootstatus(first) & WDIOF_CARDRESET:
        raise Failed(f"first boot of a fresh VM already reports a watchdog reset: {first.text}")
    _, shown = expect_status(vm, first.t, [NOT_CAUSED])
    if any("reboot history" in line for line in shown):
        raise Failed("a fresh VM's first boot already has a reboot history:\n    "
                     + "\n    ".join(shown))
    kill = vm.wait_mark("KILL", 30, after=first.t)
    fired = vm.wait_event("WATCHDOG", TIMEOUT + 8, after=kill.t)
    if fired.data.get("action") != "reset":
        raise Failed(f"WATCHDOG event with action {fired.data.get('action')}, expected reset")
    trial.note(f"kill -9 -> WATCHDOG reset after {fired.t - kill.t:.2f} s")

    second = vm.wait_mark("BOOT 2 ", 40, after=fired.t)
    status = bootstatus(second)
    trial.note(f"i6300ESB bootstatus: {bootstatus(first):#x} on the first boot, "
               f"{status:#x} after the watchdog reset")
    if not status & WDIOF_CARDRESET:
        raise Failed(f"the driver does not report WDIOF_CARDRESET after the reset: {second.text}")
    vm.wait_line("watchdog /dev/watchdog0: last reset was caused by the watchdog", 30,
                 after=second.t)
    done, _ = expect_status(vm, second.t, [CAUSED, "reboot history, newest first:",
                                           HISTORY_RESET])
    trial.note("heartwatch logged and `status` showed: last reset was caused by the watchdog; "
               "the reboot history has the watchdog reset")

    reboot = vm.wait_mark("REBOOT", 10, after=done.t)
    third = vm.wait_mark("BOOT 3 ", 40, after=reboot.t)
    if bootstatus(third) & WDIOF_CARDRESET:
        raise Failed(f"after a plain reboot the driver still reports a watchdog reset: "
                     f"{third.text}")
    expect_status(vm, third.t, [NOT_CAUSED])
    vm.expect_exit(1, 30)
    trial.note(f"control: after reboot -f, bootstatus {bootstatus(third):#x} and heartwatch "
               f"says not caused by the watchdog")
