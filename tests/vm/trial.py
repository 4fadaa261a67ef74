"""What a scenario gets to work with: boot VMs, record notes, fail with a reason.

A scenario is a file in scenarios/ with a NAME and a function run(trial).
It boots one or more machines with trial.boot(...), waits on what they say,
raises Failed when something is wrong and calls trial.note(...) for the
measurements worth printing.
"""

import os

import initramfs
from machine import Failed, Machine

__all__ = ["Failed", "Trial", "watchdog_conf"]

# Modules the guest needs to mount the host share (boot(share=True)).
SHARE_MODULES = ["virtio_pci", "9pnet_virtio", "9p"]


class Trial:
    def __init__(self, inputs, name, workdir):
        self.inputs = inputs
        self.name = name
        self.workdir = workdir
        self.notes = []
        self.machines = []
        self.share = None

    def boot(self, script, *, modules=("i6300esb",), files=None, action="poweroff",
             reboot=False, share=False, budget=90):
        """Builds an initramfs whose /init runs SCRIPT (after guest/lib.sh's
        vm_setup) and boots it. modules: loaded in this order, so the first
        watchdog driver is watchdog0; files: guest path -> text; action:
        QEMU's watchdog action; reboot: a guest or watchdog reset reboots
        the VM rather than ending QEMU; share: give the guest a host
        directory (trial.share) to mount with vm_mount_host."""
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
        machine = Machine(self.inputs.qemu, self.inputs.kernel.image, initrd, workdir,
                          action=action, reboot=reboot, share=self.share if share else None,
                          budget=budget)
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
