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
# console and to /tmp/heartwatch.log; HW_PID is its process id.
hw_start() {
	rm -f /tmp/heartwatch.fifo /tmp/heartwatch.log
	mkfifo /tmp/heartwatch.fifo
	tee /tmp/heartwatch.log </tmp/heartwatch.fifo >/dev/console &
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
