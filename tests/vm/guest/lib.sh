# shellcheck shell=sh
# Helpers for the scenarios' /init scripts (busybox sh, running as PID 1).
#
# The guest talks to the host harness through lines starting with "@@ " on
# the serial console, and ends the VM through QEMU's isa-debug-exit port:
# vm_done makes QEMU exit with 1, vm_fail with 3. "@@ FAIL ..." stops the
# host waiting at once and becomes the scenario's failure message.

vm_mark() {
	echo "@@ $*" >/dev/console
}

vm_exit() {
	sync
	# isa-debug-exit listens at port 0xf4 (244): a byte V written there makes
	# QEMU exit with status 2*V+1.
	# shellcheck disable=SC2059 # the format is the octal escape of that byte
	printf "\\$(printf '%03o' "$1")" | dd of=/dev/port bs=1 seek=244 count=1 2>/dev/null
	vm_mark "FAIL isa-debug-exit did not end the VM"
	poweroff -f
}

vm_done() {
	vm_mark DONE
	vm_exit 0
}

vm_fail() {
	vm_mark "FAIL $*"
	vm_exit 1
}

# Mounts the basic file systems, loads the modules listed in /etc/vm/modules
# (one "name [parameters]" a line, dependencies first).
vm_setup() {
	/bin/busybox mount -t proc proc /proc
	/bin/busybox --install -s
	PATH=/usr/sbin:/usr/bin:/sbin:/bin
	export PATH
	mount -t sysfs sysfs /sys
	mount -t devtmpfs devtmpfs /dev
	mount -t tmpfs tmpfs /run
	mount -t tmpfs tmpfs /tmp
	while read -r module params; do
		# shellcheck disable=SC2086 # each parameter is its own word for insmod
		insmod "/lib/modules/$module.ko" $params || vm_fail "insmod $module $params failed"
	done </etc/vm/modules
	vm_mark BOOTED
}

# The host's directory (boot(share=...)) on /mnt/host; it survives resets.
vm_mount_host() {
	mount -t 9p -o trans=virtio,version=9p2000.L,cache=none host /mnt/host ||
		vm_fail "cannot mount the host share"
}

# A sysfs attribute of a watchdog device: wd_attr watchdog0 state
wd_attr() {
	cat "/sys/class/watchdog/$1/$2" 2>/dev/null || echo "(no $2)"
}

# Starts `heartwatch run ARGS...` in the background. Its output goes to the
# console and to /tmp/heartwatch.log; HW_PID is its process id, HW_TEE_PID
# that of the tee that copies its output.
hw_start() {
	rm -f /tmp/heartwatch.fifo /tmp/heartwatch.log
	mkfifo /tmp/heartwatch.fifo
	tee /tmp/heartwatch.log </tmp/heartwatch.fifo >/dev/console &
	HW_TEE_PID=$!
	heartwatch run "$@" >/tmp/heartwatch.fifo 2>&1 &
	HW_PID=$!
}

# True while heartwatch runs (a zombie does not count).
hw_alive() {
	state=Z
	[ -r "/proc/$HW_PID/stat" ] && read -r _ _ state _ <"/proc/$HW_PID/stat"
	[ "$state" != Z ]
}

# Waits until heartwatch's log contains TEXT; fails the scenario after SECONDS.
hw_wait_log() {
	tries=$(($2 * 5))
	until grep -q -- "$1" /tmp/heartwatch.log 2>/dev/null; do
		hw_alive || vm_fail "heartwatch exited before logging '$1'"
		tries=$((tries - 1))
		[ "$tries" -gt 0 ] || vm_fail "heartwatch did not log '$1' within $2 s"
		sleep 0.2
	done
}

# Waits until `heartwatch status` shows TEXT; fails the scenario after SECONDS.
hw_wait_status() {
	tries=$(($2 * 2))
	until heartwatch status 2>/dev/null | grep -q -- "$1"; do
		hw_alive || vm_fail "heartwatch exited before its status showed '$1'"
		tries=$((tries - 1))
		[ "$tries" -gt 0 ] || vm_fail "heartwatch status did not show '$1' within $2 s"
		sleep 0.5
	done
}

# Runs `heartwatch status`, copies its output to the console as "status| ..."
# lines and marks "STATUS exit=N".
hw_status() {
	heartwatch status >/tmp/status 2>&1
	status=$?
	sed 's/^/status| /' /tmp/status >/dev/console
	vm_mark "STATUS exit=$status"
}

# The boot's number, counted in /mnt/host/boots (vm_mount_host first): 1 on
# the first boot of a scenario, then one more on each boot after a reset.
vm_count_boot() {
	BOOT=$(cat /mnt/host/boots 2>/dev/null || echo 0)
	BOOT=$((BOOT + 1))
	echo "$BOOT" >/mnt/host/boots
	sync
}

# Records each feed of heartwatch's main thread (ioctl WDIOC_KEEPALIVE,
# 0x80045705) with ftrace, with the kernel's timestamps; feed_trace_stop
# reports them. HW_PID must be set (hw_start).
TRACE=/sys/kernel/tracing
feed_trace_start() {
	[ -e "$TRACE/trace" ] || mount -t tracefs tracefs "$TRACE" || vm_fail "cannot mount tracefs"
	echo 0 >"$TRACE/tracing_on"
	: >"$TRACE/trace"
	echo "common_pid == $HW_PID && cmd == 0x80045705" \
		>"$TRACE/events/syscalls/sys_enter_ioctl/filter" || vm_fail "cannot filter the ioctl trace"
	echo 1 >"$TRACE/events/syscalls/sys_enter_ioctl/enable" || vm_fail "cannot trace ioctl"
	echo 1 >"$TRACE/tracing_on"
}

# Stops the feed trace and marks "FEEDS count=N max=S mean=S lost=N": the
# number of feeds recorded, the longest and the mean interval between two
# of them (seconds), and how many trace events the kernel dropped.
feed_trace_stop() {
	echo 0 >"$TRACE/tracing_on"
	echo 0 >"$TRACE/events/syscalls/sys_enter_ioctl/enable"
	# shellcheck disable=SC2016 # awk's own variables
	vm_mark "FEEDS $(awk '
		/LOST [0-9]+ EVENTS/ { lost += $3 }
		/sys_ioctl\(/ {
			for (i = 1; i <= NF; i++) if ($i ~ /^[0-9]+\.[0-9]+:$/) {
				t = substr($i, 1, length($i) - 1) + 0
				if (n > 0) { d = t - last; sum += d; if (d > max) max = d }
				last = t; n++
			}
		}
		END {
			mean = 0
			if (n > 1) mean = sum / (n - 1)
			printf "count=%d max=%.3f mean=%.3f lost=%d", n, max, mean, lost
		}
	' "$TRACE/trace")"
}
