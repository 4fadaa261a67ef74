"""What a scenario gets to work with: boot VMs, record notes, fail with a reason.

A scenario is a file in scenarios/ with a NAME and a function run(trial).
It boots one or more machines with trial.boot(...), waits on what they say,
raises Failed when something is wrong and calls trial.note(...) for the
measurements worth printing.
"""

import os

import initramfs
from qemu import Failed, Machine, guest_failed

__all__ = ["Failed", "Trial", "expect_status", "watchdog_conf"]

# Modules the guest needs to mount the host share (boot(share=True)).
SHARE_MODULES = ["virtio_pci", "9pnet_virtio", "9p"]

# QEMU exit statuses: isa-debug-exit turns a guest byte V into 2*V+1
# (guest/lib.sh's vm_done writes 0, vm_fail 1). A poweroff, the watchdog's
# included, exits 0; QMP events tell them apart.
EXIT_MEANINGS = {1: "guest done", 3: "guest failed", 0: "poweroff"}


class Trial:
    def __init__(self, inputs, name, workdir):
        self.inputs = inputs
        self.name = name
        self.workdir = workdir
        self.notes = []
        self.machines = []
        self.share = None

    def boot(self, script, *, modules=("i6300esb",), files=None, action="poweroff",
             reboot=False, share=False, smp=1, memory=256, budget=90):
        """Builds an initramfs whose /init runs SCRIPT (after guest/lib.sh's
        vm_setup) and boots it. modules: loaded in this order, so the first
        watchdog driver is watchdog0; files: guest path -> text; action:
        QEMU's watchdog action; reboot: a guest or watchdog reset reboots
        the VM rather than ending QEMU; share: give the guest a host
        directory (trial.share) to mount with vm_mount_host; smp: virtual
        CPUs; memory: MiB of RAM."""
        n = len(self.machines)
        workdir = os.path.join(self.workdir, f"boot{n}")
        os.makedirs(workdir)
        modules = list(modules)
        if share:
            self.share = os.path.join(self.workdir, "share")
            os.makedirs(self.share, exist_ok=True)
            modules += SHARE_MODULES
        initrd = os.path.join(workdir, "initramfs.cpio")
        initramfs.build(self.inputs, script, modules, files or {}, initrd)
        machine = Machine(
            workdir, qemu=self.inputs.qemu, kernel=self.inputs.kernel.image, initrd=initrd,
            append="console=ttyS0 panic=-1 quiet", action=action, reboot=reboot,
            share=self.share if share else None, smp=smp, memory=memory, budget=budget,
            extra=["-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"],
            abort=guest_failed, exit_meanings=EXIT_MEANINGS)
        self.machines.append(machine)
        return machine.start()

    def note(self, text):
        self.notes.append(text)

    def stop(self):
        for machine in self.machines:
            machine.stop()


def watchdog_conf(device="/dev/watchdog0", timeout=5, feed=1, keep_armed=False):
    """A heartwatch.conf that feeds DEVICE every FEED seconds at TIMEOUT seconds."""
    return (f"[Watchdog]\n"
            f"Device={device}\n"
            f"Timeout={timeout}s\n"
            f"FeedInterval={feed}s\n"
            f"KeepArmedOnStop={'yes' if keep_armed else 'no'}\n")


def expect_status(vm, after, wanted, timeout=30):
    """The guest's next hw_status after time AFTER: fails unless `heartwatch
    status` exited 0 and some line of it contains each text in WANTED.
    Returns its STATUS mark and its lines."""
    done = vm.wait_mark("STATUS", timeout, after=after)
    if "exit=0" not in done.text:
        raise Failed(f"heartwatch status failed: {done.text}")
    shown = [text[len("status| "):] for text in vm.lines_between("status| ", after, done.t)]
    for text in wanted:
        if not any(text in line for line in shown):
            raise Failed(f"`heartwatch status` does not show {text!r}:\n    "
                         + "\n    ".join(shown))
    return done, shown
