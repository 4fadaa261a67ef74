"""Everything the VM tests need on the host, fetched or built once.

QEMU comes from Debian's package (installed when missing); the kernel and the
static busybox are Debian packages too, but downloaded and unpacked into a
cache directory instead of being installed, so the host's /boot is never
touched. heartwatch itself is built statically into target/vm.
"""

import fcntl
import gzip
import lzma
import os
import re
import shutil
import subprocess
import zlib
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("HEARTWATCH_VM_CACHE", "/var/cache/heartwatch-vm"))
TARGET = "x86_64-unknown-linux-gnu"

APT_TIMEOUT = 900
CARGO_TIMEOUT = 1800


class PrepareError(Exception):
    """The host could not be made ready; the message says which step failed."""


@dataclass(frozen=True)
class Kernel:
    release: str  # e.g. 6.1.0-56-amd64
    image: Path  # what QEMU's -kernel gets: vmlinux (PVH entry) or the bzImage
    modules: dict  # module name -> path of its .ko (see ModuleIndex)


@dataclass(frozen=True)
class Inputs:
    qemu: str
    kernel: Kernel
    busybox: Path
    heartwatch: Path
    features: tuple  # cargo features heartwatch was built with


def run(cmd, timeout, **kw):
    """Runs a host command with a bound; its output is shown only on failure."""
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)
    except subprocess.TimeoutExpired:
        raise PrepareError(f"{' '.join(cmd)}: no result after {timeout} s") from None
    except FileNotFoundError:
        raise PrepareError(f"{cmd[0]}: not found") from None
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-20:])
        raise PrepareError(f"{' '.join(cmd)}: exit {done.returncode}\n{tail}")
    return done.stdout


_apt_updated = False


def apt_update_once():
    global _apt_updated
    if not _apt_updated:
        run(["apt-get", "update"], APT_TIMEOUT)
        _apt_updated = True


def ensure_qemu():
    qemu = shutil.which("qemu-system-x86_64")
    if qemu is None:
        print("vm: installing qemu-system-x86", flush=True)
        apt_update_once()
        run(["apt-get", "install", "-y", "--no-install-recommends", "qemu-system-x86"],
            APT_TIMEOUT, env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
        qemu = shutil.which("qemu-system-x86_64")
        if qemu is None:
            raise PrepareError("qemu-system-x86 installed but qemu-system-x86_64 is not on PATH")
    return qemu


def candidate_version(package):
    """The version apt would fetch, or None when apt does not know the package."""
    try:
        out = run(["apt-cache", "policy", package], 60)
    except PrepareError:
        return None
    m = re.search(r"^\s*Candidate:\s*(\S+)", out, re.M)
    return m.group(1) if m and m.group(1) != "(none)" else None


def unpacked_deb(package):
    """Downloads PACKAGE with apt and unpacks it under the cache; returns the directory.

    The directory is named after the exact version, so a kernel update on the
    mirror gives a new directory instead of a stale mix.
    """
    version = candidate_version(package)
    if version is None:
        apt_update_once()
        version = candidate_version(package)
        if version is None:
            raise PrepareError(f"apt knows no package {package}")
    dest = CACHE / "debs" / f"{package}_{version.replace(':', '%3a')}"
    stamp = dest / ".unpacked"
    if stamp.exists():
        return dest
    print(f"vm: fetching {package} {version} into {dest}", flush=True)
    download = CACHE / "download"
    shutil.rmtree(download, ignore_errors=True)
    shutil.rmtree(dest, ignore_errors=True)
    download.mkdir(parents=True)
    run(["apt-get", "download", f"{package}={version}"], APT_TIMEOUT, cwd=download)
    debs = list(download.glob("*.deb"))
    if len(debs) != 1:
        raise PrepareError(f"apt-get download {package}: expected one .deb, got {debs}")
    dest.mkdir(parents=True)
    run(["dpkg-deb", "-x", str(debs[0]), str(dest)], 300)
    shutil.rmtree(download)
    stamp.touch()
    return dest


def kernel_package():
    """Debian's current kernel image package, e.g. linux-image-6.1.0-56-amd64."""
    name = os.environ.get("HEARTWATCH_VM_KERNEL_PKG")
    if name:
        return name
    for attempt in range(2):
        try:
            out = run(["apt-cache", "depends", "linux-image-amd64"], 60)
            m = re.search(r"Depends:\s*(linux-image-\S+-amd64)\s*$", out, re.M)
            if m:
                return m.group(1)
        except PrepareError:
            pass
        if attempt == 0:
            apt_update_once()
    raise PrepareError("cannot tell which kernel linux-image-amd64 points at "
                       "(set HEARTWATCH_VM_KERNEL_PKG)")


def extract_vmlinux(bzimage):
    """The uncompressed ELF kernel inside a bzImage, or None.

    Same idea as Linux's scripts/extract-vmlinux: look for a compressed
    stream's magic and try to inflate from there until an ELF comes out.
    """
    data = bzimage.read_bytes()
    decoders = [
        (b"\xfd7zXZ\x00", lambda: lzma.LZMADecompressor(format=lzma.FORMAT_XZ)),
        (b"\x1f\x8b\x08", lambda: zlib.decompressobj(16 + zlib.MAX_WBITS)),
    ]
    for magic, decoder in decoders:
        at = data.find(magic)
        while at != -1:
            try:
                out = decoder().decompress(data[at:])
            except (lzma.LZMAError, zlib.error):
                out = b""
            if out.startswith(b"\x7fELF"):
                return out
            at = data.find(magic, at + 1)
    return None


def module_index(modules):
    """Module name -> (path, [names it depends on]) for every module of the kernel.

    The package ships no modules.dep (its postinst runs depmod), so the
    dependencies are read from each module's own .modinfo section, lazily.
    """
    return ModuleIndex({module_name(p): p for p in modules.rglob("*.ko*")})


class ModuleIndex(dict):
    def depends(self, name):
        info = elf_section(module_bytes(self[name]), b".modinfo")
        for field in info.split(b"\0"):
            if field.startswith(b"depends="):
                return [n for n in field[len(b"depends="):].decode().split(",") if n]
        return []


def module_bytes(path):
    data = path.read_bytes()
    if path.suffix == ".xz":
        return lzma.decompress(data)
    if path.suffix == ".gz":
        return gzip.decompress(data)
    if path.suffix == ".zst":
        raise PrepareError(f"{path}: zstd-compressed modules are not supported")
    return data


def elf_section(elf, wanted):
    """The contents of the 64-bit little-endian ELF section named WANTED (b"" if none)."""
    def u(at, size):
        return int.from_bytes(elf[at:at + size], "little")
    shoff, shentsize, shnum, shstrndx = u(0x28, 8), u(0x3A, 2), u(0x3C, 2), u(0x3E, 2)
    headers = [shoff + i * shentsize for i in range(shnum)]
    names = u(headers[shstrndx] + 0x18, 8)
    for h in headers:
        name_at = names + u(h, 4)
        if elf[name_at:elf.index(b"\0", name_at)] == wanted:
            offset, size = u(h + 0x18, 8), u(h + 0x20, 8)
            return elf[offset:offset + size]
    return b""


def module_name(path):
    base = Path(path).name
    return re.sub(r"\.ko(\.(xz|gz|zst))?$", "", base).replace("-", "_")


def ensure_kernel():
    root = unpacked_deb(kernel_package())
    bzimages = sorted((root / "boot").glob("vmlinuz-*"))
    if len(bzimages) != 1:
        raise PrepareError(f"{root}/boot: expected one vmlinuz-*, got {bzimages}")
    bzimage = bzimages[0]
    release = bzimage.name.removeprefix("vmlinuz-")
    modules = root / "lib" / "modules" / release
    if not modules.is_dir():
        raise PrepareError(f"{modules}: missing")

    # QEMU enters an uncompressed ELF kernel through its PVH note, skipping
    # SeaBIOS and the decompressor: /init is reached ~2 s sooner (VM-NOTES).
    image = bzimage
    config = (root / "boot" / f"config-{release}").read_text()
    if "\nCONFIG_PVH=y\n" in config:
        vmlinux = root / "vmlinux"
        if not vmlinux.exists():
            elf = extract_vmlinux(bzimage)
            if elf is not None:
                vmlinux.with_suffix(".tmp").write_bytes(elf)
                vmlinux.with_suffix(".tmp").rename(vmlinux)
        if vmlinux.exists():
            image = vmlinux
    return Kernel(release, image, module_index(modules))


def ensure_busybox():
    busybox = unpacked_deb("busybox-static") / "bin" / "busybox"
    if not busybox.exists() or not is_static(busybox):
        raise PrepareError(f"{busybox}: missing or not a static executable")
    return busybox


def is_static(path):
    """True when the ELF executable has no program interpreter (PT_INTERP)."""
    with open(path, "rb") as f:
        head = f.read(64)
        if head[:4] != b"\x7fELF" or head[4] != 2:
            return False
        phoff = int.from_bytes(head[0x20:0x28], "little")
        phentsize = int.from_bytes(head[0x36:0x38], "little")
        phnum = int.from_bytes(head[0x38:0x3A], "little")
        f.seek(phoff)
        table = f.read(phentsize * phnum)
    PT_INTERP = 3
    return all(int.from_bytes(table[i:i + 4], "little") != PT_INTERP
               for i in range(0, len(table), phentsize))


def cargo_features():
    """Features of Cargo.toml worth enabling in the VM: test-hooks, when it exists."""
    text = (REPO / "Cargo.toml").read_text()
    section = re.search(r"^\[features\]\s*$(.*?)(?=^\[|\Z)", text, re.M | re.S)
    if section and re.search(r"^\s*test-hooks\s*=", section.group(1), re.M):
        return ("test-hooks",)
    return ()


def build_heartwatch():
    features = cargo_features()
    target_dir = REPO / "target" / "vm"
    cmd = ["cargo", "build", "--release", "--target", TARGET,
           "--target-dir", str(target_dir)]
    if features:
        cmd += ["--features", ",".join(features)]
    print(f"vm: {' '.join(cmd)}", flush=True)
    env = {**os.environ, "RUSTFLAGS": "-C target-feature=+crt-static"}
    run(cmd, CARGO_TIMEOUT, cwd=REPO, env=env)
    binary = target_dir / TARGET / "release" / "heartwatch"
    if not is_static(binary):
        raise PrepareError(f"{binary}: not statically linked")
    return binary, features


def prepare():
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / ".lock", "w") as lock:
        # Two runs at once would share the download directory.
        fcntl.flock(lock, fcntl.LOCK_EX)
        qemu = ensure_qemu()
        kernel = ensure_kernel()
        busybox = ensure_busybox()
    heartwatch, features = build_heartwatch()
    return Inputs(qemu, kernel, busybox, heartwatch, features)
