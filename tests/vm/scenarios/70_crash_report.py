"""heartwatch crashes (SIGSEGV, a test hook): crash report, memory test, and the hardware fires.

heartwatch is built with the `test-hooks` feature, so HEARTWATCH_TEST_CRASH=segv
with HEARTWATCH_TEST_CRASH_AFTER_MS=3000 makes `heartwatch run` fault 3 s
after it starts. The crash handler must write its report to stderr and to
/dev/kmsg (read back with dmesg), run the memory test and pass it, feed the
watchdog once and leave it armed, and re-raise the signal so the process
dies by SIGSEGV. Nothing restarts heartwatch in this guest, so the
i6300ESB must then power the VM off one timeout later.
"""

import re

from trial import Failed, watchdog_conf

NAME = "crash-report"
TIMEOUT = 5
SIGSEGV = 11
EARLIEST, LATEST = TIMEOUT - 0.5, TIMEOUT + 3  # counted from the death, as in kill9-resets

GUEST = f"""
# The report's copy in /dev/kmsg would be printed on the console too, in the
# middle of the lines tee copies there from stderr: keep the kernel quiet
# there; dmesg shows it below.
dmesg -n 1
export HEARTWATCH_TEST_CRASH=segv HEARTWATCH_TEST_CRASH_AFTER_MS=3000
hw_start
unset HEARTWATCH_TEST_CRASH HEARTWATCH_TEST_CRASH_AFTER_MS
hw_wait_log "ready:" 30
vm_mark "READY pid=$HW_PID state=$(wd_attr watchdog0 state)"
wait "$HW_PID"
status=$?
vm_mark "DIED status=$status state=$(wd_attr watchdog0 state)"
dmesg | grep -e 'heartwatch\\[' -e 'watchdog did not stop' | sed 's/^/kmsg| /' >/dev/console
vm_mark KMSG
sleep {TIMEOUT * 4}
vm_fail "still running {TIMEOUT * 4} s after heartwatch crashed"
"""

# Lines of the report, in order, as heartwatch writes them to stderr.
REPORT = ["crash: SIGSEGV (si_code ", "crash: pid ", "crash: rules: ", "crash: fed watchdog fd",
          "crash: memory test PASSED: ", "crash: re-raising SIGSEGV with the default action"]


def run(trial):
    vm = trial.boot(GUEST, files={"/etc/heartwatch/heartwatch.conf": watchdog_conf(
        timeout=TIMEOUT, feed=1)})
    ready = vm.wait_mark("READY", 40)
    if "state=active" not in ready.text:
        raise Failed(f"watchdog0 not armed before the crash: {ready.text}")
    pid = ready.text.split("pid=")[1].split()[0]

    # The report on stderr (through the console), line by line, in order.
    t = ready.t
    report = {}
    for text in REPORT:
        line = vm.wait_line(f"heartwatch: {text}", 15, after=t)
        report[text] = line
        t = line.t
    died = vm.wait_mark("DIED", 10, after=ready.t)
    if f"status={128 + SIGSEGV} " not in died.text:
        raise Failed(f"heartwatch did not die by SIGSEGV (shell status {128 + SIGSEGV}): "
                     f"{died.text}")
    if "state=active" not in died.text:
        raise Failed(f"the crash disarmed the watchdog: {died.text}")

    # The same report in the kernel log, from heartwatch's pid.
    kmsg_done = vm.wait_mark("KMSG", 10, after=died.t)
    kmsg = vm.lines_between("kmsg| ", died.t, kmsg_done.t)
    for text in REPORT:
        if not any(f"heartwatch[{pid}]: {text}" in l for l in kmsg):
            raise Failed(f"dmesg lacks heartwatch[{pid}]: {text!r}:\n    " + "\n    ".join(kmsg))

    fired = vm.wait_event("WATCHDOG", LATEST + 5, after=died.t)
    latency = fired.t - died.t
    if fired.data.get("action") != "poweroff":
        raise Failed(f"WATCHDOG event with action {fired.data.get('action')}, expected poweroff")
    if not EARLIEST <= latency <= LATEST:
        raise Failed(f"watchdog fired {latency:.2f} s after heartwatch died, "
                     f"outside [{EARLIEST}, {LATEST}] s")
    vm.expect_exit(0, 10)

    verdict = report["crash: memory test PASSED: "].text.split("PASSED: ", 1)[1]
    took = re.search(r"anonymous mappings, (.+?) \(budget ([^)]+)\)", verdict)
    stamps = [float(re.match(r"kmsg\| \[ *([0-9.]+)\]", l).group(1)) for l in kmsg
              if "heartwatch[" in l]
    if took is None:
        raise Failed(f"cannot read the memory test's duration: {verdict}")
    first = report[REPORT[0]]
    trial.note(f"report on stderr and in dmesg: {first.text.split('crash: ', 1)[1]}")
    trial.note(f"memory test PASSED: {verdict}")
    trial.note(f"{stamps[-1] - stamps[0]:.3f} s from the first line to the re-raise in dmesg "
               f"(memory test {took.group(1)} of its {took.group(2)}); died by SIGSEGV, still "
               f"armed; WATCHDOG poweroff {latency:.2f} s after the death (timeout {TIMEOUT} s)")
