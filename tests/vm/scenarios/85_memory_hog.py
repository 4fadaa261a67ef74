"""A process eats all the VM's RAM, again and again: the OOM killer takes it, never heartwatch.

There is no systemd in the guest, so the unit's OOMScoreAdjust=-1000 is done
by hand (/proc/PID/oom_score_adj, also for the tee that copies heartwatch's
output); heartwatch locks its memory itself (mlockall). The hog is
`cat /dev/zero | tail`: busybox tail keeps the last "line" of its input in
memory, and /dev/zero has no newline, so it grows until the OOM killer ends
it; the guest starts it again for several hardware timeouts. The feeds are
recorded with ftrace (heartwatch's WDIOC_KEEPALIVE ioctls) to measure the
longest interval between two of them under that pressure.
"""

import re

from trial import Failed, watchdog_conf

NAME = "memory-hog"
TIMEOUT = 5
FEED = 1
HOG_SECONDS = 4 * TIMEOUT
MEMORY = 128  # MiB: a smaller VM fills faster, so the OOM killer comes more often

GUEST = f"""
hw_start
hw_wait_log "ready:" 30
echo -1000 >"/proc/$HW_PID/oom_score_adj"
echo -1000 >"/proc/$HW_TEE_PID/oom_score_adj"
vm_mark "READY adj=$(cat /proc/$HW_PID/oom_score_adj) \\
$(grep -E '^(VmLck|VmRSS):' /proc/$HW_PID/status | tr -s ' \\t\\n' '   ') \\
$(grep -E '^Locked:' /proc/$HW_PID/smaps_rollup | tr -s ' \\t\\n' '   ')"
feed_trace_start
end=$(($(cut -d. -f1 /proc/uptime) + {HOG_SECONDS}))
hogs=0
while [ "$(cut -d. -f1 /proc/uptime)" -lt "$end" ]; do
	cat /dev/zero | tail >/dev/null
	hogs=$((hogs + 1))
done
feed_trace_stop
dmesg | grep 'Killed process' | sed 's/^/oom| /' >/dev/console
vm_mark "HOGS started=$hogs"
hw_alive || vm_fail "heartwatch is not running any more"
vm_mark "SURVIVED state=$(wd_attr watchdog0 state)"
vm_done
"""


def run(trial):
    vm = trial.boot(GUEST, files={"/etc/heartwatch/heartwatch.conf": watchdog_conf(
        timeout=TIMEOUT, feed=FEED)}, memory=MEMORY)
    ready = vm.wait_mark("READY", 40)
    if "adj=-1000" not in ready.text:
        raise Failed(f"could not protect heartwatch from the OOM killer: {ready.text}")
    # VmLck counts locked address space (with glibc's PROT_NONE arena
    # reservations, ~64 MiB each); smaps' Locked: counts the resident pages.
    vmlck = re.search(r"VmLck: (\d+) kB", ready.text)
    locked = re.search(r"Locked: (\d+) kB", ready.text)
    rss = re.search(r"VmRSS: (\d+) kB", ready.text)
    if not (vmlck and locked and rss) or int(locked.group(1)) < int(rss.group(1)) // 2:
        raise Failed(f"heartwatch's memory is not locked (mlockall): {ready.text}")

    feeds = vm.wait_mark("FEEDS", HOG_SECONDS + 30, after=ready.t)
    hogs = vm.wait_mark("HOGS", 10, after=feeds.t)
    kills = vm.lines_between("oom| ", feeds.t, hogs.t)
    if not kills:
        raise Failed(f"the OOM killer never ran ({hogs.text}): the hog did not fill the memory")
    wrong = [k for k in kills if "(tail)" not in k]
    if wrong:
        raise Failed(f"the OOM killer took something other than the hog: {wrong[0]}")
    survived = vm.wait_mark("SURVIVED", 10, after=hogs.t)
    if "state=active" not in survived.text:
        raise Failed(f"watchdog0 no longer armed: {survived.text}")
    vm.expect_exit(1, 10)
    if vm.events_named("WATCHDOG"):
        raise Failed("the watchdog fired under memory pressure")

    stats = dict(kv.split("=") for kv in feeds.text.split()[2:])
    count, longest = int(stats["count"]), float(stats["max"])
    if count < 0.8 * HOG_SECONDS / FEED or longest > TIMEOUT / 2:
        raise Failed(f"feeding suffered under memory pressure: {feeds.text} "
                     f"(FeedInterval={FEED}s, Timeout={TIMEOUT}s)")
    trial.note(f"{len(kills)} OOM kills, all of the hog, in {HOG_SECONDS} s "
               f"({MEMORY} MiB VM); heartwatch (oom_score_adj -1000, VmRSS {rss.group(1)} kB, "
               f"Locked {locked.group(1)} kB, VmLck {vmlck.group(1)} kB) untouched, "
               f"no WATCHDOG event")
    trial.note(f"feeds under pressure: {count}, interval max {longest:.3f} s, "
               f"mean {float(stats['mean']):.3f} s (FeedInterval={FEED}s)")
