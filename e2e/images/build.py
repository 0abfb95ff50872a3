#!/usr/bin/env python3
"""Builds the e2e container images as docker-archive tars, without Docker or a registry.

This machine has no Docker engine and no access to a registry, but a real node's containerd
loads an image from a tar (`ctr -n k8s.io images import <tar>`). Such a tar (the format
`docker save` writes) holds:

    manifest.json        [{"Config": "<sha>.json", "RepoTags": ["<ref>"], "Layers": ["<sha>/layer.tar"]}]
    <sha>.json           the image config; its sha256 is the image id
    <sha>/layer.tar      one uncompressed layer; <sha> is the sha256 of the layer tar (its diff_id)

Each image here is one layer, assembled from files of this machine: a static binary, or a
dynamic one with the libraries `ldd` lists for it. Every tar is reproducible: entries sorted,
owned by 0:0 unless an entry says otherwise, mtime SOURCE_DATE_EPOCH (default 0), so the same
inputs always give the same image id.

    build.py build [--out DIR] [NAME...]     NAME: signpost pause hostnames client agnhost
                                             glibc-dns-testing (default all)
    build.py verify TAR [--rootfs DIR]       check a tar's manifest, config and layers agree;
                                             with --rootfs, also unpack its file system there

`build` prints one line per image: <name> <reference> <path> <image id>. Errors are one line
on stderr and exit status 1. `build.sh` is the wrapper to call (it builds the Rust binary
first); `check.sh` proves the images work (chroot runs, HTTP readiness, DNS lookups).
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import io
import json
import os
import posixpath
import re
import shlex
import shutil
import struct
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent

# Reproducible timestamps: what reproducible-builds tooling sets, else the epoch.
EPOCH = int(os.environ.get("SOURCE_DATE_EPOCH", "0"))

# What a shell in the image searches; runc resolves `kubectl exec <pod> -- rm ...` with it too.
PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# The unprivileged user of every image but pause: distroless' "nonroot", numeric in the
# config so that a pod's runAsNonRoot can verify it without reading /etc/passwd.
NONROOT = 65532


class BuildError(Exception):
    """A problem worth one line on stderr: a missing tool, an unexpected Dockerfile, ..."""


def require_tool(name: str, package: str) -> str:
    """The full path of a tool on PATH, or a one-line error naming the Debian package."""
    path = shutil.which(name)
    if path is None:
        raise BuildError(f"missing tool '{name}' (Debian package {package}: apt-get install -y {package})")
    return path


# --------------------------------------------------------------------------------------------
# Layers


@dataclass(frozen=True)
class Entry:
    """One entry of a layer tar. `source` is a host file whose content is copied (symlinks
    followed); `data` is inline content; `target` is a symlink's target."""

    kind: str  # "file", "dir" or "symlink"
    mode: int = 0o755
    uid: int = 0
    gid: int = 0
    source: str | None = None
    data: bytes | None = None
    target: str | None = None
    # Extended attributes, (name, value) pairs: `security.capability` for file capabilities.
    xattrs: tuple[tuple[str, bytes], ...] = ()


class Layer:
    """The file system of one layer: destination path (absolute, in the image) -> Entry.

    Parent directories are added implicitly (0755, root). Adding the same path twice is
    fine when both say the same thing (two binaries linking one library) and an error
    otherwise, so that no entry silently replaces another.
    """

    def __init__(self) -> None:
        self.entries: dict[str, Entry] = {}

    def _put(self, dest: str, entry: Entry) -> None:
        if not dest.startswith("/") or posixpath.normpath(dest) != dest or dest == "/":
            raise BuildError(f"layer path must be absolute and normalised: {dest!r}")
        old = self.entries.get(dest)
        if old is not None and old != entry:
            raise BuildError(f"two different entries for {dest} in one layer: {old} and {entry}")
        self.entries[dest] = entry

    def file(
        self,
        source: str | Path,
        dest: str,
        mode: int | None = None,
        xattrs: tuple[tuple[str, bytes], ...] = (),
    ) -> None:
        """Copies the host file `source` (following symlinks) to `dest`. The mode defaults
        to the host file's permission bits; `xattrs` are stored in the tar (PAX
        `SCHILY.xattr.*`, which containerd applies when it unpacks the layer)."""
        real = os.path.realpath(source)
        if not os.path.isfile(real):
            raise BuildError(f"not a file: {source}")
        if mode is None:
            mode = os.stat(real).st_mode & 0o7777
        self._put(dest, Entry("file", mode=mode, source=real, xattrs=xattrs))

    def text(self, dest: str, content: str, mode: int = 0o644) -> None:
        """A small file written from a string (configuration files)."""
        self._put(dest, Entry("file", mode=mode, data=content.encode()))

    def dir(self, dest: str, mode: int = 0o755, uid: int = 0, gid: int = 0) -> None:
        """A directory with a mode or owner other than the implicit parents' 0755 root."""
        self._put(dest, Entry("dir", mode=mode, uid=uid, gid=gid))

    def symlink(self, dest: str, target: str) -> None:
        self._put(dest, Entry("symlink", mode=0o777, target=target))

    def binary(self, source: str | Path, dest: str, xattrs: tuple[tuple[str, bytes], ...] = ()) -> None:
        """A program with everything it links: the binary at `dest`, and each shared library
        and the dynamic loader at the path `ldd` prints for it (a static binary has none)."""
        self.file(source, dest, 0o755, xattrs)
        for lib in shared_libraries(source):
            self.file(lib, lib)

    def write(self, out: io.BufferedIOBase) -> None:
        """Writes the layer as an uncompressed tar, entries sorted by path. A parent always
        sorts before its children (it is a prefix of their paths), as extraction needs."""
        entries = dict(self.entries)
        for dest in list(entries):
            parent = posixpath.dirname(dest)
            while parent != "/":
                if parent in entries and entries[parent].kind != "dir":
                    raise BuildError(f"{dest}: its parent {parent} is not a directory in the layer")
                entries.setdefault(parent, Entry("dir"))
                parent = posixpath.dirname(parent)
        with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for dest in sorted(entries):
                entry = entries[dest]
                info = tarinfo(dest.lstrip("/"), entry.mode, entry.uid, entry.gid)
                # Binary values go through surrogateescape, which tarfile writes back byte for
                # byte (with `hdrcharset=BINARY` when they are not UTF-8).
                info.pax_headers = {
                    f"SCHILY.xattr.{name}": value.decode("utf-8", "surrogateescape")
                    for name, value in entry.xattrs
                }
                if entry.kind == "dir":
                    info.type = tarfile.DIRTYPE
                    tar.addfile(info)
                elif entry.kind == "symlink":
                    info.type = tarfile.SYMTYPE
                    info.linkname = entry.target
                    tar.addfile(info)
                elif entry.data is not None:
                    info.size = len(entry.data)
                    tar.addfile(info, io.BytesIO(entry.data))
                else:
                    info.size = os.path.getsize(entry.source)
                    with open(entry.source, "rb") as f:
                        tar.addfile(info, f)


def tarinfo(name: str, mode: int, uid: int = 0, gid: int = 0) -> tarfile.TarInfo:
    """A tar header with nothing of the build machine in it: fixed mtime, no user names."""
    info = tarfile.TarInfo(name)
    info.mode = mode
    info.uid, info.gid = uid, gid
    info.uname = info.gname = ""
    info.mtime = EPOCH
    return info


_LDD_LINE = re.compile(r"^\s*(?:(\S+)\s+=>\s+)?(\S+)\s+\(0x[0-9a-f]+\)\s*$")


def shared_libraries(binary: str | Path) -> list[str]:
    """The absolute paths `ldd` prints for a binary: its shared libraries (transitively) and
    the dynamic loader. Empty for a static binary. The vDSO (no path) is skipped, and a
    library ldd cannot find is an error rather than a broken image.

    These are the names the loader will open in the image, so they are copied under exactly
    these names (content of the symlink's target), and the image needs no ld.so.cache: the
    loader's built-in search path includes /lib/x86_64-linux-gnu."""
    ldd = require_tool("ldd", "libc-bin")
    run = subprocess.run([ldd, str(binary)], capture_output=True, text=True)
    out = run.stdout + run.stderr
    if "not a dynamic executable" in out or "statically linked" in out:
        return []
    if run.returncode != 0:
        raise BuildError(f"ldd {binary} failed: {out.strip().splitlines()[-1:]}")
    libs = []
    for line in run.stdout.splitlines():
        if "=> not found" in line:
            raise BuildError(f"ldd {binary}: library not found on this machine: {line.strip()}")
        m = _LDD_LINE.match(line)
        if m is None:
            raise BuildError(f"ldd {binary}: unexpected line {line.strip()!r}")
        path = m.group(2)
        if path.startswith("/"):
            libs.append(path)
    return sorted(set(libs))


# --------------------------------------------------------------------------------------------
# Image config and archive


@dataclass
class ImageConfig:
    """The runtime part of an image config (the `config` object of the image JSON)."""

    entrypoint: list[str] | None = None
    cmd: list[str] | None = None
    user: str = ""
    env: list[str] = field(default_factory=lambda: [PATH_ENV])
    labels: dict[str, str] = field(default_factory=dict)
    exposed_ports: list[str] = field(default_factory=list)
    working_dir: str = "/"

    def to_json(self) -> dict:
        out: dict = {"Env": self.env, "WorkingDir": self.working_dir}
        if self.user:
            out["User"] = self.user
        if self.entrypoint is not None:
            out["Entrypoint"] = self.entrypoint
        if self.cmd is not None:
            out["Cmd"] = self.cmd
        if self.labels:
            out["Labels"] = self.labels
        if self.exposed_ports:
            out["ExposedPorts"] = {p: {} for p in self.exposed_ports}
        return out


def canonical_json(value) -> bytes:
    """JSON with sorted keys and no spaces: the same object always hashes the same."""
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def write_image(path: Path, ref: str, layer: Layer, config: ImageConfig, created_by: str) -> str:
    """Writes a one-layer docker-archive tar at `path` (atomically: a `.tmp` sibling, then a
    rename, so a reader of target/images/*.tar never sees half an image). Returns the image
    id, "sha256:<sha256 of the config JSON>", which is what `ctr images ls` and the CRI show."""
    path.parent.mkdir(parents=True, exist_ok=True)
    created = "1970-01-01T00:00:00Z" if EPOCH == 0 else _rfc3339(EPOCH)
    # The layer is written to a hidden scratch directory next to the output (same disk,
    # and never matched by a *.tar glob), hashed, then copied into the archive.
    with tempfile.TemporaryDirectory(prefix=".build-", dir=path.parent) as scratch:
        layer_path = Path(scratch) / "layer.tar"
        with open(layer_path, "wb") as f:
            layer.write(f)
        diff_id = sha256_file(layer_path)
        image = {
            "architecture": "amd64",
            "os": "linux",
            "created": created,
            "config": config.to_json(),
            "rootfs": {"type": "layers", "diff_ids": [f"sha256:{diff_id}"]},
            "history": [{"created": created, "created_by": created_by}],
        }
        config_bytes = canonical_json(image)
        config_id = hashlib.sha256(config_bytes).hexdigest()
        manifest = [{"Config": f"{config_id}.json", "RepoTags": [ref], "Layers": [f"{diff_id}/layer.tar"]}]

        tmp = path.with_name(path.name + ".tmp")
        with tarfile.open(tmp, mode="w", format=tarfile.PAX_FORMAT) as tar:
            dir_info = tarinfo(diff_id, 0o755)
            dir_info.type = tarfile.DIRTYPE
            tar.addfile(dir_info)
            info = tarinfo(f"{diff_id}/layer.tar", 0o644)
            info.size = layer_path.stat().st_size
            with open(layer_path, "rb") as f:
                tar.addfile(info, f)
            for name, data in ((f"{config_id}.json", config_bytes), ("manifest.json", canonical_json(manifest))):
                info = tarinfo(name, 0o644)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        os.replace(tmp, path)
    return f"sha256:{config_id}"


def _rfc3339(seconds: int) -> str:
    return datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# --------------------------------------------------------------------------------------------
# The Dockerfile's final stage: the one source of truth for the Signpost image


@dataclass
class Copy:
    """`COPY --from=<stage> <sources...> <dest>`; dest already joined with the source's
    name when it ends in '/', as Docker does."""

    stage: str
    sources: list[str]
    dest: str


@dataclass
class FinalStage:
    base: str
    labels: dict[str, str] = field(default_factory=dict)
    env: list[str] = field(default_factory=list)
    user: str | None = None
    workdir: str | None = None
    exposed_ports: list[str] = field(default_factory=list)
    entrypoint: list[str] | None = None
    cmd: list[str] | None = None
    copies: list[Copy] = field(default_factory=list)
    # (path, caps) of every `RUN ... setcap <caps> <path>` in any stage: the binary the final
    # stage copies from a builder keeps the capabilities set on it there.
    setcaps: list[tuple[str, str]] = field(default_factory=list)
    source: str = "Dockerfile"

    def setcap(self, path: str) -> str | None:
        """The capabilities a `RUN ... setcap <caps> <path>` of any stage gives `path`; None
        when none does."""
        found = [caps for p, caps in self.setcaps if p == path]
        if len(found) > 1:
            raise BuildError(f"{self.source}: {len(found)} setcap of {path}; expected at most one")
        return found[0] if found else None


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) for each logical line: comments dropped (also inside a
    continued instruction, as BuildKit does), backslash continuations joined."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical = pending + line
        pending = ""
        word, _, rest = logical.partition(" ")
        out.append((word.upper(), rest.strip()))
    if pending:
        raise BuildError(f"Dockerfile ends inside a continued line: {pending.strip()!r}")
    return out


def _key_values(instruction: str, args: str) -> list[tuple[str, str]]:
    """`k=v k2="v 2"` (or the legacy one-pair `k v`) of LABEL and ENV."""
    words = shlex.split(args)
    if not words:
        raise BuildError(f"Dockerfile: {instruction} without arguments")
    if "=" not in words[0]:
        return [(words[0], " ".join(words[1:]))]
    pairs = []
    for w in words:
        key, eq, value = w.partition("=")
        if not eq:
            raise BuildError(f"Dockerfile: {instruction} {args!r}: {w!r} is not key=value")
        pairs.append((key, value))
    return pairs


def _exec_form(instruction: str, args: str) -> list[str]:
    """ENTRYPOINT/CMD in JSON (exec) form. The shell form needs /bin/sh, which the
    distroless base does not have, so it is refused rather than guessed at."""
    try:
        value = json.loads(args)
    except json.JSONDecodeError:
        value = None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise BuildError(f"Dockerfile: {instruction} must be a JSON array (exec form), got {args!r}")
    return value


def parse_final_stage(dockerfile: Path) -> FinalStage:
    """Reads what the image built by `dockerfile` contains and how it runs: the instructions
    after the last FROM. Only instructions whose effect this script reproduces are accepted;
    anything else (RUN, ADD, a COPY from the build context, variables, ...) is an error
    naming the instruction, so that the Dockerfile and this image cannot drift apart
    silently."""
    try:
        text = dockerfile.read_text()
    except OSError as e:
        raise BuildError(f"cannot read {dockerfile}: {e.strerror}")
    instructions = dockerfile_instructions(text)
    froms = [i for i, (word, _) in enumerate(instructions) if word == "FROM"]
    if not froms:
        raise BuildError(f"{dockerfile}: no FROM instruction")
    base_args = instructions[froms[-1]][1].split()
    stage = FinalStage(base=base_args[0] if base_args else "", source=dockerfile.name)
    for word, args in instructions:
        if word == "RUN":
            stage.setcaps += [(m.group(2), m.group(1)) for m in re.finditer(r"\bsetcap\s+(\S+)\s+(\S+)", args)]
    for word, args in instructions[froms[-1] + 1 :]:
        where = f"{dockerfile.name}, final stage: {word} {args}"
        if "$" in args and word not in ("ENTRYPOINT", "CMD"):
            raise BuildError(f"{where}: variables are not supported by e2e/images/build.py")
        if word == "LABEL":
            stage.labels.update(_key_values(word, args))
        elif word == "ENV":
            stage.env += [f"{k}={v}" for k, v in _key_values(word, args)]
        elif word == "USER":
            stage.user = args
        elif word == "WORKDIR":
            stage.workdir = args
        elif word == "EXPOSE":
            stage.exposed_ports += [p if "/" in p else f"{p}/tcp" for p in args.split()]
        elif word == "ENTRYPOINT":
            stage.entrypoint = _exec_form(word, args)
        elif word == "CMD":
            stage.cmd = _exec_form(word, args)
        elif word == "COPY":
            words = shlex.split(args)
            flags = [w for w in words if w.startswith("--")]
            paths = [w for w in words if not w.startswith("--")]
            froms_ = [f.split("=", 1)[1] for f in flags if f.startswith("--from=")]
            others = [f for f in flags if not f.startswith(("--from=", "--link"))]
            if len(froms_) != 1 or others or len(paths) < 2:
                raise BuildError(f"{where}: only 'COPY --from=<stage> <source...> <dest>' is supported")
            sources, dest = paths[:-1], paths[-1]
            if dest.endswith("/") or len(sources) > 1:
                raise BuildError(f"{where}: copy one file to an explicit destination path")
            stage.copies.append(Copy(froms_[0], sources, dest))
        else:
            raise BuildError(f"{where}: e2e/images/build.py does not know how to reproduce {word}")
    return stage


# Capability numbers (linux/capability.h) of the names a Dockerfile's setcap may use here.
CAPABILITIES = {
    "cap_chown": 0,
    "cap_dac_override": 1,
    "cap_net_bind_service": 10,
    "cap_net_broadcast": 11,
    "cap_net_admin": 12,
    "cap_net_raw": 13,
}


def file_capabilities(text: str) -> bytes:
    """The `security.capability` value (struct vfs_cap_data, revision 2) that `setcap TEXT`
    stores, for TEXT of the form `cap_a,cap_b=FLAGS` or `+FLAGS`, FLAGS from `eip`."""
    m = re.fullmatch(r"([a-z_]+(?:,[a-z_]+)*)[=+]([eip]+)", text)
    if m is None:
        raise BuildError(f"setcap {text!r}: expected cap_x[,cap_y]=FLAGS (FLAGS from e, i, p)")
    mask = 0
    for name in m.group(1).split(","):
        if name not in CAPABILITIES:
            raise BuildError(f"setcap {text!r}: unknown capability {name} (known: {' '.join(CAPABILITIES)})")
        mask |= 1 << CAPABILITIES[name]
    flags = m.group(2)
    permitted = mask if "p" in flags else 0
    inheritable = mask if "i" in flags else 0
    magic = 0x02000000 | (1 if "e" in flags else 0)  # VFS_CAP_REVISION_2 | VFS_CAP_FLAGS_EFFECTIVE
    return struct.pack(
        "<5I", magic, permitted & 0xFFFFFFFF, inheritable & 0xFFFFFFFF, permitted >> 32, inheritable >> 32
    )


def dockerfile_setcap(dockerfile: Path, path: str) -> str | None:
    """The capabilities a `RUN ... setcap <caps> <path>` of any stage gives `path`, so that the
    binary the final stage copies from there carries them here too; None when none does.
    For callers without the parsed stage (check.sh); the build reads `FinalStage.setcap`."""
    return parse_final_stage(dockerfile).setcap(path)


# --------------------------------------------------------------------------------------------
# Pieces shared by the images


def etc_files(layer: Layer, hosts_lookup: bool = True) -> None:
    """What distroless' base has in /etc for programs that look up users or names: root,
    nobody and nonroot (65532) in /etc/passwd and /etc/group, and an nsswitch.conf that keeps
    glibc on its built-in `files` and `dns` sources (no NSS module to dlopen). A writable
    /tmp and the users' home directories too."""
    layer.text(
        "/etc/passwd",
        "root:x:0:0:root:/root:/sbin/nologin\n"
        "nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n"
        f"nonroot:x:{NONROOT}:{NONROOT}:nonroot:/home/nonroot:/sbin/nologin\n",
    )
    layer.text("/etc/group", f"root:x:0:\nnobody:x:65534:\nnonroot:x:{NONROOT}:\n")
    nss = "passwd: files\ngroup: files\nshadow: files\n"
    if hosts_lookup:
        nss += "hosts: files dns\nnetworks: files\nprotocols: files\nservices: files\n"
    layer.text("/etc/nsswitch.conf", nss)
    layer.dir("/tmp", 0o1777)
    layer.dir("/root", 0o700)
    layer.dir("/home/nonroot", 0o700, NONROOT, NONROOT)


def busybox(layer: Layer, applets: list[str] | None, exclude: tuple[str, ...] = ()) -> None:
    """Debian's static busybox at /bin/busybox, with a /bin/<applet> symlink per applet
    (busybox picks the applet from the name it is called by); `None` links every applet this
    busybox has, but those in `exclude` (names another program of the image answers to)."""
    bb = require_tool("busybox", "busybox-static")
    if shared_libraries(bb):
        raise BuildError(f"{bb} is not static: install busybox-static (apt-get install -y busybox-static)")
    available = set(subprocess.run([bb, "--list"], capture_output=True, text=True, check=True).stdout.split())
    if applets is None:
        applets = sorted(available - {"busybox"})
    missing = [a for a in applets if a not in available]
    if missing:
        raise BuildError(f"{bb} lacks the applets {', '.join(missing)}")
    layer.file(bb, "/bin/busybox", 0o755)
    for applet in applets:
        if applet not in exclude:
            layer.symlink(f"/bin/{applet}", "busybox")


# Enough for a shell session in a pod (kubectl exec) and the tests' commands.
BUSYBOX_APPLETS = sorted(
    "sh ash cat cp echo env false grep head hostname httpd id kill ln ls mkdir mv printf ps "
    "pwd rm rmdir sed sleep sort tail tee test timeout touch tr true uname wc wget which".split()
)

def stoppable(command: str) -> list[str]:
    """An entrypoint running `command` that stops at once on SIGTERM. A container's PID 1
    gets no default signal action, so a program without a handler (busybox sleep, httpd)
    ignores SIGTERM and every pod deletion waits out its grace period. The shell traps
    TERM/INT and exits 0; the kernel then ends the rest of the container. `wait $!` passes
    the command's own exit status on, so a failing command still fails the container."""
    return ["/bin/sh", "-c", f"trap 'exit 0' TERM INT; {command} & wait $!"]


# --------------------------------------------------------------------------------------------
# The images


@dataclass
class Built:
    name: str
    ref: str
    path: Path
    image_id: str


def image_signpost(out: Path) -> Built:
    """Signpost's release image, as the Dockerfile at the repository root describes it.

    The Dockerfile's final stage gives the labels, user, ports, entrypoint and cmd, and its
    `COPY --from=<builder> .../signpost <dest>` says where the binary goes; the binary itself
    is cargo's target/release/signpost (build.sh builds it). The distroless base cannot be
    pulled here, so a stand-in layer holds what the binary needs from it: the libraries ldd
    lists (glibc, libgcc_s), /etc/passwd and /etc/group with nonroot, nsswitch.conf, /tmp,
    the CA bundle, and the base image's Env and WorkingDir."""
    ref = "signpost.local/signpost:dev"
    stage = parse_final_stage(REPO / "Dockerfile")
    copies = [c for c in stage.copies if posixpath.basename(c.sources[0]) == "signpost"]
    if len(stage.copies) != 1 or len(copies) != 1:
        raise BuildError(
            "Dockerfile, final stage: expected exactly one COPY, of the signpost binary from the "
            f"builder stage; found {[(c.stage, c.sources, c.dest) for c in stage.copies]}"
        )
    if stage.entrypoint is None:
        raise BuildError("Dockerfile, final stage: no ENTRYPOINT")
    dest = copies[0].dest
    binary = REPO / "target" / "release" / "signpost"
    if not binary.is_file():
        raise BuildError(f"no {binary.relative_to(REPO)}: run cargo build --release -p signpost-controllers --bin signpost")

    layer = Layer()
    etc_files(layer)
    env = [PATH_ENV]
    certs = "/etc/ssl/certs/ca-certificates.crt"
    if os.path.isfile(certs):  # distroless ships the CA bundle and points SSL_CERT_FILE at it
        layer.file(certs, certs, 0o644)
        env.append(f"SSL_CERT_FILE={certs}")
    # File capabilities the Dockerfile's builder stage sets on the binary it copies: the
    # permitted set that lets `signpost proxy` run as a non-root user (docs/proxy.md).
    caps = stage.setcap(copies[0].sources[0])
    xattrs = (("security.capability", file_capabilities(caps)),) if caps else ()
    layer.binary(binary, dest, xattrs)

    config = ImageConfig(
        entrypoint=stage.entrypoint,
        cmd=stage.cmd,
        user=stage.user if stage.user is not None else str(NONROOT),  # distroless :nonroot
        env=_merge_env(env, stage.env),
        labels=stage.labels,
        exposed_ports=stage.exposed_ports,
        working_dir=stage.workdir or "/home/nonroot",  # distroless :nonroot
    )
    path = out / "signpost.tar"
    image_id = write_image(path, ref, layer, config, f"e2e/images/build.py: Dockerfile final stage, {stage.base} stand-in")
    return Built("signpost", ref, path, image_id)


def _merge_env(base: list[str], overrides: list[str]) -> list[str]:
    env = {e.split("=", 1)[0]: e for e in base}
    for e in overrides:
        env[e.split("=", 1)[0]] = e
    return list(env.values())


def image_pause(out: Path) -> Built:
    """The pod sandbox image containerd's CRI starts first in every pod: pause.c compiled
    static (no libc in the image), alone at /pause, as unprivileged 65535 like upstream's."""
    ref = "signpost.local/pause:3.10"
    gcc = require_tool("gcc", "gcc")
    with tempfile.TemporaryDirectory() as tmp:
        exe = Path(tmp) / "pause"
        run = subprocess.run(
            [gcc, "-static", "-Os", "-s", "-Wall", "-Wextra", "-Werror", "-o", str(exe), str(HERE / "pause.c")],
            capture_output=True,
            text=True,
        )
        if run.returncode != 0:
            first = (run.stderr.strip().splitlines() or ["?"])[0]
            raise BuildError(f"gcc -static pause.c failed (is libc6-dev installed?): {first}")
        layer = Layer()
        layer.file(exe, "/pause", 0o755)
        config = ImageConfig(entrypoint=["/pause"], user="65535:65535")
        path = out / "pause.tar"
        image_id = write_image(path, ref, layer, config, "e2e/images/build.py: gcc -static -Os pause.c")
    return Built("pause", ref, path, image_id)


def image_hostnames(out: Path) -> Built:
    """The seed's serve_hostname: GET / on port 9376 answers the pod's host name (no newline,
    as upstream's), from busybox httpd. Everything it writes is under /tmp/www, so it runs
    with a read-only root file system when an emptyDir is mounted at /tmp. GET /ready is the
    readiness probe's file: `kubectl exec <pod> -- rm /tmp/www/ready` makes it answer 404."""
    ref = "signpost.local/hostnames:1"
    layer = Layer()
    etc_files(layer, hosts_lookup=False)
    busybox(layer, BUSYBOX_APPLETS)
    serve = (
        "mkdir -p /tmp/www && printf %s \"$(hostname)\" > /tmp/www/index.html && "
        "touch /tmp/www/ready && httpd -f -p 9376 -h /tmp/www"
    )
    config = ImageConfig(
        entrypoint=stoppable(serve),
        user=f"{NONROOT}:{NONROOT}",
        exposed_ports=["9376/tcp"],
    )
    path = out / "hostnames.tar"
    image_id = write_image(path, ref, layer, config, "e2e/images/build.py: busybox httpd serving the host name")
    return Built("hostnames", ref, path, image_id)


# Debian programs in the client image: destination -> (program on this machine, package).
# Each comes with the libraries ldd lists for it; running them in a chroot of the layer
# (check.sh) showed they need nothing else at run time but /etc/nsswitch.conf and the
# /etc/resolv.conf the kubelet mounts. dash, timeout and env are there because Debian's
# static busybox prefers its own applets whenever /proc is mounted (as in every container):
# its sh, timeout and env would run busybox's nslookup, not bind's, for `nslookup`. dash and
# coreutils search PATH, where /usr/bin comes first.
CLIENT_PROGRAMS = {
    "/usr/bin/curl": ("curl", "curl"),
    "/usr/bin/dig": ("dig", "bind9-dnsutils"),
    "/usr/bin/nslookup": ("nslookup", "bind9-dnsutils"),
    "/bin/dash": ("dash", "dash"),
    "/usr/bin/timeout": ("timeout", "coreutils"),
    "/usr/bin/env": ("env", "coreutils"),
}
CLIENT_APPLETS = [a for a in BUSYBOX_APPLETS if a not in ("sh", "ash", "timeout", "env")]


def image_client(out: Path) -> Built:
    """A pod to resolve and fetch from: Debian's curl, dig and nslookup (bind's, not
    busybox's), dash as /bin/sh, and busybox for the other shell tools. Its entrypoint
    sleeps until SIGTERM."""
    ref = "signpost.local/client:1"
    layer = Layer()
    etc_files(layer)
    busybox(layer, CLIENT_APPLETS)
    for dest, (program, package) in CLIENT_PROGRAMS.items():
        layer.binary(require_tool(program, package), dest)
    layer.symlink("/bin/sh", "dash")
    certs = "/etc/ssl/certs/ca-certificates.crt"
    if os.path.isfile(certs):  # for curl https://...
        layer.file(certs, certs, 0o644)
    config = ImageConfig(entrypoint=stoppable("sleep infinity"), user=f"{NONROOT}:{NONROOT}")
    path = out / "client.tar"
    image_id = write_image(path, ref, layer, config, "e2e/images/build.py: busybox, dash, curl, dig, nslookup")
    return Built("client", ref, path, image_id)


# Where e2e.test reads the test images it runs: `configs[<Id>] = Config{<registry>, "<name>",
# "<version>"}` and the registry's default in test/utils/image/manifest.go.
TEST_IMAGE_CONFIG = r'configs\[{id}\]\s*=\s*Config\{{list\.(\w+),\s*"([^"]+)",\s*"([^"]+)"\}}'


def test_image_reference(image_id: str) -> str:
    """The reference e2e.test of the Kubernetes source SIGNPOST_KUBERNETES_SOURCE names (build.sh
    sets it) asks for as its test image `image_id`, e.g. Agnhost ->
    registry.k8s.io/e2e-test-images/agnhost:2.66.1: the image is imported under that name, so
    the specs' pods find it on the node without a pull."""
    source = os.environ.get("SIGNPOST_KUBERNETES_SOURCE")
    if not source:
        raise BuildError("Kubernetes' test images need SIGNPOST_KUBERNETES_SOURCE: build them with e2e/images/build.sh")
    manifest = Path(source) / "test" / "utils" / "image" / "manifest.go"
    try:
        text = manifest.read_text()
    except OSError as e:
        raise BuildError(f"cannot read {manifest}: {e.strerror}") from e
    config = re.search(TEST_IMAGE_CONFIG.format(id=image_id), text)
    if config is None:
        raise BuildError(f"{manifest}: no `configs[{image_id}] = Config{{...}}` line")
    field, name, version = config.groups()
    registry = re.search(rf'\b{field}:\s*"([^"]+)"', text)
    if registry is None:
        raise BuildError(f"{manifest}: no default for the registry {field}")
    return f"{registry.group(1)}/{name}:{version}"


def test_image_tools(layer: Layer, programs: dict[str, tuple[str, str]]) -> None:
    """The shell tools of Kubernetes' test images: `programs` from this machine (with their
    libraries), dash as /bin/sh, and every busybox applet but the names those answer to, as
    upstream's bases (Alpine, Debian) have them (the specs' shell lines use seq, sleep, ...)."""
    etc_files(layer)
    shadowed = ("sh", "ash", *(posixpath.basename(dest) for dest in programs))
    busybox(layer, None, exclude=shadowed)
    for dest, (program, package) in programs.items():
        layer.binary(require_tool(program, package), dest)
    layer.symlink("/bin/sh", "dash")


def image_agnhost(out: Path) -> Built:
    """Kubernetes' e2e test image, for the specs e2e.test runs on real nodes
    (e2e/real/conformance.sh): /agnhost built from the same Kubernetes release as e2e.test
    (static; build.sh sets SIGNPOST_AGNHOST_BIN), upstream's entrypoint and default command
    (`/agnhost pause`) and user (root), and the shell tools the specs exec (nc, nslookup, dig,
    curl: test_image_tools)."""
    binary = os.environ.get("SIGNPOST_AGNHOST_BIN")
    if not binary:
        raise BuildError("the agnhost image needs SIGNPOST_AGNHOST_BIN: build it with e2e/images/build.sh agnhost")
    if not os.path.isfile(binary):
        raise BuildError(f"no agnhost binary at {binary}: run e2e/controlplane/build.sh agnhost")
    if shared_libraries(binary):
        raise BuildError(f"{binary} is not static: build it with CGO_ENABLED=0")
    ref = test_image_reference("Agnhost")
    layer = Layer()
    test_image_tools(layer, AGNHOST_PROGRAMS)
    layer.file(binary, "/agnhost", 0o755)
    config = ImageConfig(entrypoint=["/agnhost"], cmd=["pause"])
    path = out / "agnhost.tar"
    image_id = write_image(path, ref, layer, config, "e2e/images/build.py: agnhost, busybox, dash, nc, curl, dig, nslookup")
    return Built("agnhost", ref, path, image_id)


# The programs of Kubernetes' test images: the client's, and glibc's getent (the glibc side of
# the DNS specs, `getent hosts <name>`). agnhost adds OpenBSD's netcat, which the Services specs
# run in its pods (`echo hostName | nc -v -t -w 2 <host> <port>`), as upstream's images
# (Alpine's netcat-openbsd, bind-tools and libc utilities; Debian's dnsutils) have them.
GLIBC_DNS_PROGRAMS = {**CLIENT_PROGRAMS, "/usr/bin/getent": ("getent", "libc-bin")}
AGNHOST_PROGRAMS = {**GLIBC_DNS_PROGRAMS, "/usr/bin/nc": ("nc.openbsd", "netcat-openbsd")}


def image_glibc_dns_testing(out: Path) -> Built:
    """Kubernetes' glibc-dns-testing image, the second querier of the DNS specs
    (e2e/real/conformance.sh): glibc's getent, dig and a shell, run as root with no entrypoint
    of its own (the specs give the command), as upstream's."""
    ref = test_image_reference("GlibcDnsTesting")
    layer = Layer()
    test_image_tools(layer, GLIBC_DNS_PROGRAMS)
    config = ImageConfig(cmd=["/bin/sh"])
    path = out / "glibc-dns-testing.tar"
    image_id = write_image(path, ref, layer, config, "e2e/images/build.py: getent, dig, nslookup, dash, busybox")
    return Built("glibc-dns-testing", ref, path, image_id)


IMAGES = {
    "signpost": image_signpost,
    "pause": image_pause,
    "hostnames": image_hostnames,
    "client": image_client,
    "agnhost": image_agnhost,
    "glibc-dns-testing": image_glibc_dns_testing,
}


# --------------------------------------------------------------------------------------------
# verify


def verify(tar_path: Path, rootfs: Path | None = None) -> str:
    """Checks that a docker-archive tar is self-consistent and returns a one-line summary:
    one manifest entry naming a config whose file name is its sha256; amd64/linux; as many
    layers as diff_ids, each layer's sha256 equal to its diff_id; inside the layers relative
    paths only, no '..', parents before children, fixed mtimes, and the entrypoint (after
    symlinks) a file in the image with an execute bit. With `rootfs`, unpacks the layers
    there (as the runtime's snapshotter would) for chroot tests."""

    def fail(msg: str) -> BuildError:
        return BuildError(f"verify {tar_path}: {msg}")

    with tarfile.open(tar_path) as outer:
        def read(name: str) -> bytes:
            try:
                f = outer.extractfile(name)
            except KeyError:
                f = None
            if f is None:
                raise fail(f"no file {name}")
            return f.read()

        manifest = json.loads(read("manifest.json"))
        if not isinstance(manifest, list) or len(manifest) != 1:
            raise fail("manifest.json must hold exactly one image")
        m = manifest[0]
        config_name = m["Config"]
        config_bytes = read(config_name)
        config_id = hashlib.sha256(config_bytes).hexdigest()
        if config_name != f"{config_id}.json":
            raise fail(f"config {config_name} has sha256 {config_id}")
        config = json.loads(config_bytes)
        if (config.get("architecture"), config.get("os")) != ("amd64", "linux"):
            raise fail(f"platform {config.get('os')}/{config.get('architecture')}, not linux/amd64")
        diff_ids = config["rootfs"]["diff_ids"]
        if config["rootfs"].get("type") != "layers" or len(diff_ids) != len(m["Layers"]):
            raise fail(f"{len(m['Layers'])} layers but diff_ids {diff_ids}")
        if len(config.get("history", [])) != len(m["Layers"]):
            raise fail("history must have one entry per layer")

        members: dict[str, tarfile.TarInfo] = {}
        for layer_name, diff_id in zip(m["Layers"], diff_ids):
            data = read(layer_name)
            if f"sha256:{hashlib.sha256(data).hexdigest()}" != diff_id:
                raise fail(f"{layer_name} does not hash to {diff_id}")
            with tarfile.open(fileobj=io.BytesIO(data)) as layer:
                seen: set[str] = set()
                for info in layer.getmembers():
                    name = info.name.rstrip("/")
                    if name.startswith("/") or ".." in name.split("/"):
                        raise fail(f"{layer_name}: unsafe path {info.name!r}")
                    parent = posixpath.dirname(name)
                    if parent and parent not in seen:
                        raise fail(f"{layer_name}: {name} comes before its directory {parent}")
                    if info.mtime != EPOCH:
                        raise fail(f"{layer_name}: {name} has mtime {info.mtime}, not {EPOCH}")
                    seen.add(name)
                    members["/" + name] = info
                if rootfs is not None:
                    rootfs.mkdir(parents=True, exist_ok=True)
                    extract = {"filter": "fully_trusted"} if hasattr(tarfile, "fully_trusted_filter") else {}
                    layer.extractall(rootfs, numeric_owner=True, **extract)

    run = (config["config"].get("Entrypoint") or []) + (config["config"].get("Cmd") or [])
    if not run:
        raise fail("neither Entrypoint nor Cmd")
    program = _resolve(members, run[0])
    if program is None or not program.isfile() or not program.mode & 0o111:
        raise fail(f"entrypoint {run[0]} is not an executable file in the image")
    for name, info in members.items():
        if info.issym() and _resolve(members, name) is None:
            raise fail(f"dangling symlink {name} -> {info.linkname}")

    size = sum(i.size for i in members.values())
    tag = ",".join(m.get("RepoTags") or [])
    caps = "".join(f", file capabilities {name} {text}" for name, text in file_capabilities_of(members))
    return f"ok {tar_path} {tag} sha256:{config_id} {len(members)} entries, {size / 1e6:.1f} MB unpacked{caps}"


def file_capabilities_of(members: dict[str, tarfile.TarInfo]) -> list[tuple[str, str]]:
    """(path, `cap_a,cap_b=p` as getcap prints it) for each entry with a `security.capability`
    xattr (revision 2, the one setcap writes; the effective flag shown as `e`)."""
    names = {bit: name for name, bit in CAPABILITIES.items()}
    out = []
    for path, info in sorted(members.items()):
        raw = info.pax_headers.get("SCHILY.xattr.security.capability")
        if raw is None:
            continue
        value = raw.encode("utf-8", "surrogateescape")
        magic, p_lo, i_lo, p_hi, i_hi = struct.unpack("<5I", value[:20])
        permitted, inheritable = p_lo | p_hi << 32, i_lo | i_hi << 32
        caps = ",".join(names.get(bit, f"cap_{bit}") for bit in range(64) if (permitted | inheritable) >> bit & 1)
        flags = ("e" if magic & 1 else "") + ("i" if inheritable else "") + ("p" if permitted else "")
        out.append((path, f"{caps}={flags}"))
    return out


def _resolve(members: dict[str, tarfile.TarInfo], path: str, depth: int = 0) -> tarfile.TarInfo | None:
    """The entry `path` names inside the image, following symlinks (absolute ones from the
    image's root), or None."""
    info = members.get(posixpath.normpath(path))
    if info is None or depth > 16:
        return None
    if info.issym():
        target = info.linkname
        if not target.startswith("/"):
            target = posixpath.join(posixpath.dirname(posixpath.normpath(path)), target)
        return _resolve(members, target, depth + 1)
    return info


# --------------------------------------------------------------------------------------------


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="build image tars")
    b.add_argument("--out", type=Path, default=REPO / "target" / "images")
    b.add_argument("names", nargs="*", metavar="NAME", help=" ".join(IMAGES))
    v = sub.add_parser("verify", help="check an image tar")
    v.add_argument("tar", type=Path)
    v.add_argument("--rootfs", type=Path, help="also unpack the image's file system here")
    args = parser.parse_args(argv)
    try:
        if args.command == "build":
            names = args.names or list(IMAGES)
            unknown = [n for n in names if n not in IMAGES]
            if unknown:
                raise BuildError(f"unknown image {', '.join(unknown)}; known: {' '.join(IMAGES)}")
            for name in names:
                built = IMAGES[name](args.out.resolve())
                print(built.name, built.ref, built.path, built.image_id, flush=True)
        else:
            print(verify(args.tar, args.rootfs))
    except BuildError as e:
        print(f"{Path(sys.argv[0]).name}: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
