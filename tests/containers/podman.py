"""podman as the container tests use it, and the stand-in images they need.

No Docker engine and no registry here: podman (Debian's, with runc) runs the project's own
image, and the images it cannot pull are made locally from Debian packages — test
scaffolding, named `localhost/standin/…`; users keep the real bases. Each stand-in is made
once per machine and reused while it exists."""
import json
import os
import pathlib
import shutil
import subprocess
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[2]
HERE = pathlib.Path(__file__).resolve().parent
ENV = dict(os.environ, CONTAINERS_CONF=str(HERE / "containers.conf"))

DISTROLESS = "localhost/standin/distroless-cc:nonroot"
APM_SERVER = "localhost/standin/apm-server:test"
# The same stand-in under another name: "another APM Server image" for compose's override.
APM_SERVER_OTHER = "localhost/standin/apm-server:other"


def log(message: str) -> None:
    print(f"containers: {message}", flush=True)


def podman(*args: str, check: bool = True, timeout: float = 120, capture: bool = True,
           input: bytes | None = None) -> subprocess.CompletedProcess:
    """`podman ARGS`; raises with podman's output when it fails and `check` is set."""
    out = subprocess.run(["podman", *args], env=ENV, timeout=timeout, input=input,
                         capture_output=capture)
    if check and out.returncode != 0:
        raise RuntimeError(f"podman {' '.join(args)} exited {out.returncode}:\n"
                           f"{(out.stdout or b'').decode(errors='replace')}"
                           f"{(out.stderr or b'').decode(errors='replace')}")
    return out


def text(out: subprocess.CompletedProcess) -> str:
    return (out.stdout or b"").decode(errors="replace")


def image_exists(name: str) -> bool:
    return podman("image", "exists", name, check=False).returncode == 0


def inspect(kind: str, name: str) -> dict:
    return json.loads(text(podman(kind, "inspect", name)))[0]


def rustc_version() -> str:
    out = subprocess.run(["rustc", "--version"], capture_output=True, text=True, check=True)
    return out.stdout.split()[1]


def rust_image() -> str:
    return f"localhost/standin/rust:{rustc_version()}-slim-bookworm"


def debian_mirror() -> str:
    """The Debian mirror this machine's apt uses (debootstrap needs one)."""
    for path in sorted(pathlib.Path("/etc/apt").rglob("*.sources")):
        for stanza in path.read_text().split("\n\n"):
            fields = dict(line.split(":", 1) for line in stanza.splitlines()
                          if ":" in line and not line.startswith("#"))
            if "bookworm" in fields.get("Suites", "").split() and fields.get("URIs"):
                return fields["URIs"].split()[0]
    for path in [pathlib.Path("/etc/apt/sources.list"), *pathlib.Path("/etc/apt").rglob("*.list")]:
        if path.exists():
            for line in path.read_text().splitlines():
                words = line.split()
                if len(words) >= 3 and words[0] == "deb" and words[2] == "bookworm":
                    return words[1]
    raise RuntimeError("no Debian bookworm mirror in /etc/apt")


def import_root(root: pathlib.Path, name: str, *changes: str) -> None:
    tar = subprocess.Popen(["tar", "-C", str(root), "-c", "."], stdout=subprocess.PIPE)
    args = ["import"] + [a for c in changes for a in ("--change", c)] + ["-", name]
    out = subprocess.run(["podman", *args], env=ENV, stdin=tar.stdout, capture_output=True,
                         timeout=600)
    tar.wait()
    if out.returncode != 0 or tar.returncode != 0:
        raise RuntimeError(f"podman import {name}: {out.stderr.decode(errors='replace')}")


def make_distroless() -> None:
    """distroless cc-debian12:nonroot is itself assembled from these Debian packages: glibc,
    libgcc, CA certificates, time zones, /etc/passwd with nonroot (65532), no shell."""
    if image_exists(DISTROLESS):
        return
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as work:
        work = pathlib.Path(work)
        packages = ["libc6", "libgcc-s1", "ca-certificates", "tzdata", "netbase"]
        if subprocess.run(["apt-get", "download", "-q", *packages], cwd=work, capture_output=True).returncode:
            # A machine whose package lists were never fetched (or are stale).
            subprocess.run(["apt-get", "update", "-qq"], check=True, capture_output=True, timeout=600)
            subprocess.run(["apt-get", "download", "-q", *packages], cwd=work, check=True, capture_output=True)
        root = work / "root"
        for deb in sorted(work.glob("*.deb")):
            subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
        for d in ("tmp", "home/nonroot", "etc/ssl/certs"):
            (root / d).mkdir(parents=True, exist_ok=True)
        (root / "tmp").chmod(0o1777)
        (root / "etc/passwd").write_text(
            "root:x:0:0:root:/root:/sbin/nologin\n"
            "nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n"
            "nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n")
        (root / "etc/group").write_text("root:x:0:\nnobody:x:65534:\nnonroot:x:65532:\n")
        os.chown(root / "home/nonroot", 65532, 65532)
        # The package's postinst builds the bundle on a real system; the host's is the same.
        shutil.copy("/etc/ssl/certs/ca-certificates.crt", root / "etc/ssl/certs/")
        for d in ("usr/share/doc", "usr/share/man", "usr/share/lintian", "usr/share/locale"):
            shutil.rmtree(root / d, ignore_errors=True)
        import_root(root, DISTROLESS, "USER 65532:65532", "WORKDIR /home/nonroot")
    log(f"made {DISTROLESS} in {time.monotonic() - started:.0f} s")


def make_rust() -> str:
    """rust:<version>-slim-bookworm: a Debian bookworm root (debootstrap, with gcc and the C
    library headers as the real image has) and this machine's own Rust toolchain, laid out
    with the real image's CARGO_HOME and PATH."""
    name = rust_image()
    if image_exists(name):
        return name
    if shutil.which("debootstrap") is None:
        raise RuntimeError("debootstrap is not installed (scripts/setup.sh test installs it)")
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as work:
        root = pathlib.Path(work) / "root"
        subprocess.run(["debootstrap", "--variant=minbase", "--include=ca-certificates,gcc,libc6-dev",
                        "bookworm", str(root), debian_mirror()],
                       check=True, capture_output=True, timeout=900)
        sysroot = pathlib.Path(subprocess.run(["rustc", "--print", "sysroot"], capture_output=True,
                                              text=True, check=True).stdout.strip())
        rust = root / "usr/local/rust"
        (rust / "bin").mkdir(parents=True)
        for tool in ("cargo", "rustc"):
            shutil.copy2(sysroot / "bin" / tool, rust / "bin" / tool)
        shutil.copytree(sysroot / "lib", rust / "lib", symlinks=True)
        (root / "usr/local/cargo/bin").mkdir(parents=True)
        # This machine's trust store: the registries are reached through it here.
        shutil.copy("/etc/ssl/certs/ca-certificates.crt", root / "etc/ssl/certs/")
        shutil.rmtree(root / "var/cache/apt/archives", ignore_errors=True)
        import_root(root, name,
                    "ENV PATH=/usr/local/cargo/bin:/usr/local/rust/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                    "ENV CARGO_HOME=/usr/local/cargo", "ENV RUSTUP_HOME=/usr/local/rustup")
    log(f"made {name} in {time.monotonic() - started:.0f} s")
    return name


def make_apm_server(binary: pathlib.Path) -> None:
    """The test suite's stand-in APM Server (examples/standin_apm_server.rs) in an image on
    the distroless stand-in: it takes APM Server's own `-E apm-server.host=…` and logs every
    request it receives as a JSON line. Remade every run (the binary may have changed)."""
    with tempfile.TemporaryDirectory() as work:
        work = pathlib.Path(work)
        shutil.copy2(binary, work / "apm-server")
        (work / "Containerfile").write_text(
            f"FROM {DISTROLESS}\n"
            "COPY apm-server /usr/share/apm-server/apm-server\n"
            "USER 1000:1000\n"
            "EXPOSE 8200\n"
            'ENTRYPOINT ["/usr/share/apm-server/apm-server"]\n'
            'CMD ["-e", "-E", "apm-server.host=0.0.0.0:8200"]\n')
        podman("build", "--pull=never", "-q", "-t", APM_SERVER, str(work))


def remove_everything(prefix: str) -> None:
    """Containers, pods, networks and volumes whose names start with `prefix` (left by a run
    that was killed)."""
    for kind, fmt in (("pod", "{{.Name}}"), ("container", "{{.Names}}")):
        names = text(podman(kind, "ps", "-a", "--format", fmt, check=False)).split()
        for n in names:
            if n.startswith(prefix):
                podman(kind, "rm", "-f", "-t", "0", n, check=False)
    for kind in ("network", "volume"):
        names = text(podman(kind, "ls", "--format", "{{.Name}}", check=False)).split()
        for n in names:
            if n.startswith(prefix):
                podman(kind, "rm", "-f", n, check=False)
