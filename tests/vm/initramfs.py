"""The guest's root file system: an uncompressed newc cpio archive.

Written here rather than with cpio(1) so that device nodes need neither root
nor mknod on the host, and so that the archive's contents are exactly the
list below. Uncompressed, because the kernel unpacks that fastest and the
whole image is a few megabytes.
"""

import stat
from pathlib import Path

from prepare import module_bytes

GUEST_DIR = Path(__file__).resolve().parent / "guest"

DIRS = ["bin", "sbin", "usr/bin", "usr/sbin", "dev", "proc", "sys", "tmp", "run", "root",
        "mnt/host", "etc/vm", "etc/heartwatch/rules.d", "var/lib/heartwatch", "lib/modules"]


class Cpio:
    """Builds a newc archive in memory (the format the kernel's initramfs reads)."""

    def __init__(self):
        self.parts = []
        self.ino = 1
        self.dirs = set()

    def _entry(self, name, mode, data=b"", rdev=(0, 0)):
        name_bytes = name.encode() + b"\0"
        fields = [self.ino, mode, 0, 0, 1, 0, len(data), 0, 0, rdev[0], rdev[1],
                  len(name_bytes), 0]
        self.ino += 1
        header = b"070701" + b"".join(b"%08x" % f for f in fields)
        self.parts += [header, name_bytes, _pad(len(header) + len(name_bytes)),
                       data, _pad(len(data))]

    def dir(self, name):
        if name not in self.dirs:
            self._parents(name)
            self._entry(name, stat.S_IFDIR | 0o755)
            self.dirs.add(name)

    def _parents(self, name):
        parent = str(Path(name).parent)
        if parent != ".":
            self.dir(parent)

    def file(self, name, data, mode=0o644):
        self._parents(name)
        if isinstance(data, str):
            data = data.encode()
        self._entry(name, stat.S_IFREG | mode, data)

    def symlink(self, name, target):
        self._parents(name)
        self._entry(name, stat.S_IFLNK | 0o777, target.encode())

    def chardev(self, name, major, minor):
        self._entry(name, stat.S_IFCHR | 0o600, rdev=(major, minor))

    def bytes(self):
        self._entry("TRAILER!!!", 0)
        return b"".join(self.parts)


def _pad(n):
    return b"\0" * (-n % 4)


def module_closure(modules, wanted):
    """The modules to insmod, dependencies first, each once, in `wanted` order."""
    order = []

    def visit(name):
        if name not in modules:
            raise KeyError(f"kernel has no module {name} (built in? misspelt?)")
        if name in order:
            return
        for needed in modules.depends(name):
            visit(needed)
        order.append(name)

    for name in wanted:
        visit(name)
    return order


def build(inputs, script, modules, files, out):
    """Writes the archive for one boot to OUT.

    script: the scenario's /init body (busybox sh); guest/lib.sh is sourced
    before it. modules: names to load at boot, in order, optionally with
    parameters ("softdog soft_noboot=1"). files: guest path -> text.
    """
    archive = Cpio()
    for d in DIRS:
        archive.dir(d)
    archive.chardev("dev/console", 5, 1)
    archive.chardev("dev/null", 1, 3)
    archive.file("bin/busybox", inputs.busybox.read_bytes(), 0o755)
    archive.symlink("bin/sh", "busybox")
    archive.file("usr/sbin/heartwatch", inputs.heartwatch.read_bytes(), 0o755)

    index = inputs.kernel.modules
    params = dict((m.split(None, 1) + [""])[:2] for m in modules)
    load = []
    for name in module_closure(index, list(params)):
        archive.file(f"lib/modules/{name}.ko", module_bytes(index[name]))
        load.append(f"{name} {params.get(name, '')}".rstrip())
    archive.file("etc/vm/modules", "\n".join(load) + "\n")

    archive.file("etc/vm/lib.sh", (GUEST_DIR / "lib.sh").read_text())
    archive.file("init", "#!/bin/sh\n. /etc/vm/lib.sh\nvm_setup\n" + script, 0o755)
    for path, text in files.items():
        archive.file(path.lstrip("/"), text)
    Path(out).write_bytes(archive.bytes())
