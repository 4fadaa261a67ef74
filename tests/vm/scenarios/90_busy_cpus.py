"""Busy loops on every CPU of a 2-CPU VM: heartwatch, SCHED_OTHER, keeps feeding.

The unit (systemd/heartwatch.service) sets no CPUSchedulingPolicy= and has
RestrictRealtime=yes, so heartwatch runs SCHED_OTHER at nice 0, the same as
the busy loops here (`while :; do :; done`, one per CPU). The guest records
heartwatch's feeds with ftrace and reads the scheduler's statistics for its
main thread (wait_max: the longest time it sat runnable without a CPU).
"""

from trial import Failed, watchdog_conf

NAME = "busy-cpus"
TIMEOUT = 5
FEED = 1
CPUS = 2
BUSY_SECONDS = 4 * TIMEOUT
SCHED_OTHER = 0

GUEST = f"""
# Jiffies spent busy and in total on all CPUs, from /proc/stat.
cpu_times() {{
	awk '/^cpu / {{ print $2 + $3 + $4 + $7 + $8 + $9, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9 }}' /proc/stat
}}
hw_start
hw_wait_log "ready:" 30
echo 1 >/proc/sys/kernel/sched_schedstats
vm_mark "READY cpus=$(nproc) $(awk '{{print "nice=" $19 " policy=" $41}}' /proc/$HW_PID/stat)"
feed_trace_start
set -- $(cpu_times)
busy0=$1 total0=$2
loops=
i=0
while [ "$i" -lt "$(nproc)" ]; do
	(while :; do :; done) &
	loops="$loops $!"
	i=$((i + 1))
done
sleep {BUSY_SECONDS}
set -- $(cpu_times)
vm_mark "LOAD busy=$((100 * ($1 - busy0) / ($2 - total0)))%"
# shellcheck disable=SC2086 # one word per pid
kill $loops
feed_trace_stop
vm_mark "SCHED $(awk '/wait_max|nr_involuntary_switches/ {{print $1 "=" $3}}' /proc/$HW_PID/sched | tr '\\n' ' ')"
hw_alive || vm_fail "heartwatch is not running any more"
vm_mark "SURVIVED state=$(wd_attr watchdog0 state)"
vm_done
"""


def run(trial):
    vm = trial.boot(GUEST, files={"/etc/heartwatch/heartwatch.conf": watchdog_conf(
        timeout=TIMEOUT, feed=FEED)}, smp=CPUS)
    ready = vm.wait_mark("READY", 60)
    if f"cpus={CPUS} " not in ready.text:
        raise Failed(f"expected {CPUS} CPUs in the guest: {ready.text}")
    if f"policy={SCHED_OTHER}" not in ready.text or "nice=0" not in ready.text:
        raise Failed(f"heartwatch is not SCHED_OTHER at nice 0 as under its unit: {ready.text}")
    load = vm.wait_mark("LOAD", BUSY_SECONDS + 20, after=ready.t)
    if load.t - ready.t < BUSY_SECONDS:
        raise Failed(f"the loops ran only {load.t - ready.t:.1f} s")
    feeds = vm.wait_mark("FEEDS", 15, after=load.t)
    sched = vm.wait_mark("SCHED", 10, after=feeds.t)
    survived = vm.wait_mark("SURVIVED", 10, after=sched.t)
    if "state=active" not in survived.text:
        raise Failed(f"watchdog0 no longer armed: {survived.text}")
    vm.expect_exit(1, 10)
    if vm.events_named("WATCHDOG"):
        raise Failed("the watchdog fired while the CPUs were busy")
    stats = dict(kv.split("=") for kv in feeds.text.split()[2:])
    count, longest = int(stats["count"]), float(stats["max"])
    if count < 0.8 * BUSY_SECONDS / FEED or longest > TIMEOUT / 2:
        raise Failed(f"feeding suffered under CPU load: {feeds.text} "
                     f"(FeedInterval={FEED}s, Timeout={TIMEOUT}s)")
    busy = int(load.text.split("busy=")[1].rstrip("%"))
    if busy < 90:
        raise Failed(f"the busy loops did not keep the CPUs busy: {load.text}")
    sched_stats = dict(kv.split("=") for kv in sched.text.split()[2:])
    wait_max = next((v for k, v in sched_stats.items() if k.endswith("wait_max")), "?")
    trial.note(f"{CPUS} CPUs busy for {BUSY_SECONDS} s ({busy}% busy), heartwatch "
               f"SCHED_OTHER nice 0: {count} feeds, interval max {longest:.3f} s, mean "
               f"{float(stats['mean']):.3f} s; runqueue wait_max {wait_max} ms; "
               f"no WATCHDOG event")
