"""A Python base image built here, so the Dockerfile can be built where no registry is reachable.

`debootstrap --variant=minbase bookworm` from the Debian mirror apt already uses (read from
/etc/apt/sources.list*, never written down here), plus python3, python3-venv and
ca-certificates; the machine's CA bundle and the network parts of its pip config are copied
in so `pip install` works inside `docker build --network host`. Then `docker import`.
The image is cached on the engine: built once (a few minutes), reused while it exists.

    python3 -m tests.e2e.baseimage   # build it on the test engine, print how long it took
"""

from __future__ import annotations

import configparser
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

BASE_IMAGE = "dockwatch-test/python-base:bookworm"
SUITE = "bookworm"
PACKAGES = ("python3", "python3-venv", "ca-certificates")
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
PIP_CONFIGS = (Path("/etc/pip.conf"), Path("/etc/xdg/pip/pip.conf"), Path.home() / ".config/pip/pip.conf")
# pip settings that describe how to reach an index; paths on this machine (find-links,
# constraint, file:// indexes) mean nothing inside the image and are left out.
PIP_NETWORK_KEYS = ("index-url", "extra-index-url", "trusted-host", "proxy", "timeout", "retries")


def _deb_sources(text: str) -> list[tuple[str, list[str]]]:
    """(URI, suites) pairs from a deb822 .sources file."""
    out: list[tuple[str, list[str]]] = []
    for stanza in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        for line in stanza.splitlines():
            if line.startswith("#") or ":" not in line or line[:1].isspace():
                continue
            k, _, v = line.partition(":")
            fields[k.strip().lower()] = v.strip()
        if "deb" in fields.get("types", "").split() and fields.get("enabled", "yes") != "no":
            out.extend((uri, fields.get("suites", "").split()) for uri in fields.get("uris", "").split())
    return out


def _one_line_sources(text: str) -> list[tuple[str, list[str]]]:
    """(URI, [suite]) pairs from a one-line-style .list file."""
    out = []
    for line in text.splitlines():
        words = re.sub(r"\[[^]]*\]", "", line.split("#", 1)[0]).split()
        if len(words) >= 3 and words[0] == "deb":
            out.append((words[1], [words[2]]))
    return out


def debian_mirror(apt_dir: Path = Path("/etc/apt")) -> str:
    """The URI apt uses for the `bookworm` suite itself (not -security, not -updates)."""
    entries: list[tuple[str, list[str]]] = []
    files = [apt_dir / "sources.list", *sorted((apt_dir / "sources.list.d").glob("*"))]
    for f in files:
        if not f.is_file():
            continue
        text = f.read_text(errors="replace")
        if f.name.endswith(".sources"):
            entries += _deb_sources(text)
        elif f.name.endswith(".list"):
            entries += _one_line_sources(text)
    for uri, suites in entries:
        if SUITE in suites:
            return uri
    raise RuntimeError(f"no apt source for suite {SUITE!r} in {apt_dir}/sources.list*")


def pip_config() -> str:
    """A pip.conf for the image: the image's CA bundle, and this machine's index settings."""
    cp = configparser.ConfigParser()
    cp.read([p for p in PIP_CONFIGS if p.is_file()])
    lines = ["[global]", f"cert = {CA_BUNDLE}"]
    for section in ("global", "install"):
        for key in PIP_NETWORK_KEYS:
            value = cp.get(section, key, fallback=None)
            if value is None:
                continue
            urls = [u for u in value.split() if not u.startswith(("file:", "/"))]
            if urls:
                lines.append(f"{key} = {' '.join(urls)}")
    return "\n".join(lines) + "\n"


def build_rootfs(dest: Path, mirror: str, log: Path) -> None:
    with open(log, "ab") as out:
        subprocess.run(
            [
                "debootstrap",
                "--variant=minbase",
                f"--include={','.join(PACKAGES)}",
                SUITE,
                str(dest),
                mirror,
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            check=True,
            timeout=1200,
        )
    # The machine may reach the internet through a TLS-inspecting proxy whose CA only its own
    # bundle has; pip in the image must trust the same roots.
    shutil.copyfile(CA_BUNDLE, dest / CA_BUNDLE.relative_to("/"))
    (dest / "etc/pip.conf").write_text(pip_config())
    # Package caches and lists are dead weight in an image.
    for d in ("var/cache/apt/archives", "var/lib/apt/lists"):
        for p in (dest / d).glob("*"):
            if p.is_file():
                p.unlink()
    shutil.rmtree(dest / "usr/share/doc", ignore_errors=True)
    shutil.rmtree(dest / "usr/share/man", ignore_errors=True)


def ensure_base_image(docker: list[str], env: dict[str, str] | None = None, log: Path | None = None) -> float:
    """Build and import BASE_IMAGE unless the engine has it; return seconds spent (0 if cached).

    `docker` is the command prefix (e.g. ["docker"]), `env` carries DOCKER_HOST.
    """

    def run(*args: str, timeout: float = 600) -> str:
        res = subprocess.run([*docker, *args], env=env, capture_output=True, text=True, timeout=timeout)
        if res.returncode != 0:
            raise RuntimeError(f"docker {' '.join(args)} failed: {res.stderr}")
        return res.stdout.strip()

    if run("images", "-q", BASE_IMAGE):
        return 0.0
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="dwt-base-") as tmp:
        rootfs = Path(tmp) / "rootfs"
        build_rootfs(rootfs, debian_mirror(), log or Path(tmp) / "debootstrap.log")
        tar = Path(tmp) / "rootfs.tar"
        subprocess.run(["tar", "--numeric-owner", "-C", str(rootfs), "-cf", str(tar), "."], check=True)
        run(
            "import",
            "--change",
            "ENV LANG=C.UTF-8",
            "--change",
            "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "--change",
            'CMD ["python3"]',
            str(tar),
            BASE_IMAGE,
        )
    return time.monotonic() - t0


if __name__ == "__main__":
    from tests.support.engine import test_engine

    with test_engine() as eng:
        took = ensure_base_image(["docker"], eng.env, Path("/tmp/dwt-debootstrap.log"))
        size = eng.docker("image", "inspect", "--format", "{{.Size}}", BASE_IMAGE)
        print(f"{BASE_IMAGE}: {'cached' if not took else f'built in {took:.0f} s'}, {int(size) / 1e6:.0f} MB")
