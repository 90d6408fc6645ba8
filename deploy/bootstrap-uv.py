"""Put a uv binary in a folder with nothing but the Python standard library: no pip, no venv.

`make setup` runs this where ``$(PYTHON) -m uv`` is missing and pip cannot install uv (Debian's
own python3 refuses with PEP 668 "externally-managed-environment", and may have no pip or venv
module at all). It asks PyPI's JSON API for the uv releases, takes the newest one in the range the
Makefile asks for that has a wheel for this platform, downloads that wheel, checks the sha256 PyPI
lists for it, and extracts the ``uv`` executable the wheel carries (``uv-*.data/scripts/uv``).

    python3 deploy/bootstrap-uv.py .tools/uv ">=0.5,<1"

A ``uv`` already at the target whose version is in the range is kept.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import urllib.request
import zipfile
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urljoin

INDEX = "https://pypi.org/pypi"
TIMEOUT = 60
Version = tuple[int, ...]


def parse_version(text: str) -> Version | None:
    """A final release's version (``0.9.5``); None for pre-releases and anything else."""
    if not re.fullmatch(r"\d+(\.\d+)*", text):
        return None
    parts = [int(part) for part in text.split(".")]
    while len(parts) > 1 and parts[-1] == 0:
        parts.pop()
    return tuple(parts)


def in_range(version: Version, spec: str) -> bool:
    """Whether ``version`` meets every clause of ``spec`` (``>=0.5,<1``: >=, >, <=, <, ==, !=)."""
    compare = {
        ">=": lambda a, b: a >= b,
        ">": lambda a, b: a > b,
        "<=": lambda a, b: a <= b,
        "<": lambda a, b: a < b,
        "==": lambda a, b: a == b,
        "!=": lambda a, b: a != b,
    }
    for clause in filter(None, (part.strip() for part in spec.split(","))):
        match = re.fullmatch(r"(>=|<=|==|!=|>|<)\s*(\S+)", clause)
        bound = parse_version(match.group(2)) if match else None
        if match is None or bound is None:
            raise SystemExit(f"bootstrap-uv: cannot read the version range {spec!r}")
        if not compare[match.group(1)](version, bound):
            return False
    return True


def glibc_version() -> tuple[int, int] | None:
    try:
        text = os.confstr("CS_GNU_LIBC_VERSION") or ""  # "glibc 2.36"
    except (AttributeError, OSError, ValueError):
        text = ""
    match = re.search(r"(\d+)\.(\d+)", text)
    return (int(match.group(1)), int(match.group(2))) if match else None


def musl_version() -> tuple[int, int] | None:
    """musl's version, from the loader's banner (``ldd`` prints it on musl systems)."""
    try:
        # the loader from PATH, as a shell would run it
        done = subprocess.run(["ldd", "--version"], capture_output=True, text=True, timeout=10, check=False)  # noqa: S607
    except (OSError, subprocess.SubprocessError):
        return None
    text = done.stdout + done.stderr
    match = re.search(r"musl libc.*?Version (\d+)\.(\d+)", text, re.DOTALL | re.IGNORECASE)
    return (int(match.group(1)), int(match.group(2))) if match else None


def platform_tags() -> list[str]:
    """Wheel platform tags this machine runs, best first."""
    machine = platform.machine().lower()
    if sys.platform.startswith("linux"):
        arch = {"amd64": "x86_64", "arm64": "aarch64", "i386": "i686", "i586": "i686"}.get(machine, machine)
        if arch == "x86_64" and sys.maxsize <= 2**32:
            arch = "i686"  # a 32-bit Python on a 64-bit kernel
        tags: list[str] = []
        glibc = glibc_version()
        if glibc is not None:
            major, minor = glibc
            tags += [f"manylinux_{major}_{m}_{arch}" for m in range(minor, -1, -1)]
            legacy = {(2, 17): "manylinux2014", (2, 12): "manylinux2010", (2, 5): "manylinux1"}
            tags += [
                f"{name}_{arch}" for (lmajor, lminor), name in legacy.items() if (major, minor) >= (lmajor, lminor)
            ]
        else:
            musl = musl_version()
            if musl is not None:
                tags += [f"musllinux_{musl[0]}_{m}_{arch}" for m in range(musl[1], -1, -1)]
        return [*tags, f"linux_{arch}"]
    if sys.platform == "darwin":
        arch = "arm64" if machine in ("arm64", "aarch64") else "x86_64"
        release = platform.mac_ver()[0] or "10.12"
        major, minor = (int(part) for part in [*release.split("."), "0"][:2])
        tags = []
        for mac_major in range(major, 10, -1):
            tags += [f"macosx_{mac_major}_0_{arch}", f"macosx_{mac_major}_0_universal2"]
        top_minor = minor if major == 10 else 16
        for mac_minor in range(top_minor, -1, -1):
            tags += [f"macosx_10_{mac_minor}_{arch}", f"macosx_10_{mac_minor}_universal2"]
        return tags
    if sys.platform == "win32":
        if machine in ("arm64", "aarch64"):
            return ["win_arm64"]
        return ["win_amd64"] if sys.maxsize > 2**32 else ["win32"]
    return []


def wheel_platforms(filename: str) -> set[str]:
    """The platform tags of a wheel's name (``uv-0.9.5-py3-none-manylinux_2_17_x86_64.manylinux2014_x86_64.whl``)."""
    stem = filename.removesuffix(".whl")
    parts = stem.split("-")
    return set(parts[-1].split(".")) if len(parts) >= 5 else set()


def fetch_json(url: str) -> tuple[dict[str, object], str]:
    """The document at ``url`` and the address it came from (after redirects), which the files'
    URLs may be relative to (a mirror's are)."""
    request = urllib.request.Request(url, headers={"Accept": "application/json"})  # noqa: S310 - the https index
    with urllib.request.urlopen(request, timeout=TIMEOUT) as answer:  # noqa: S310
        data: dict[str, object] = json.load(answer)
        return data, answer.geturl()


def candidates(
    releases: dict[str, list[dict[str, object]]], spec: str, tags: list[str]
) -> Iterator[tuple[str, dict[str, object]]]:
    """(version, file) for each release in ``spec``, newest first, with its wheel best for ``tags``."""
    versions = sorted(
        ((parsed, text) for text in releases if (parsed := parse_version(text)) and in_range(parsed, spec)),
        reverse=True,
    )
    for _, text in versions:
        best: tuple[int, dict[str, object]] | None = None
        for file in releases[text]:
            name = str(file.get("filename", ""))
            if not name.endswith(".whl") or file.get("yanked"):
                continue
            ranks = [tags.index(tag) for tag in wheel_platforms(name) if tag in tags]
            if ranks and (best is None or min(ranks) < best[0]):
                best = (min(ranks), file)
        if best is not None:
            yield text, best[1]


def installed_version(binary: Path) -> Version | None:
    if not binary.is_file():
        return None
    try:
        done = subprocess.run(  # noqa: S603 - the binary this script installs
            [str(binary), "--version"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.match(r"uv (\S+)", done.stdout)
    return parse_version(match.group(1)) if match and done.returncode == 0 else None


def download(url: str, sha256: str, into: Path) -> None:
    digest = hashlib.sha256()
    with urllib.request.urlopen(url, timeout=TIMEOUT) as answer, into.open("wb") as out:  # noqa: S310
        while chunk := answer.read(1 << 20):
            digest.update(chunk)
            out.write(chunk)
    if digest.hexdigest() != sha256.lower():
        raise SystemExit(f"bootstrap-uv: {url} does not match the sha256 the index lists; not installed")


def extract(wheel: Path, name: str, target: Path) -> None:
    """Copy the wheel's ``*.data/scripts/<name>`` to ``target``, executable, replacing it whole."""
    with zipfile.ZipFile(wheel) as archive:
        members = [m for m in archive.namelist() if re.fullmatch(r"[^/]+\.data/scripts/" + re.escape(name), m)]
        if len(members) != 1:
            raise SystemExit(f"bootstrap-uv: {wheel.name} carries no {name} executable")
        partial = target.with_name(target.name + ".partial")
        with archive.open(members[0]) as source, partial.open("wb") as out:
            shutil.copyfileobj(source, out)
    partial.chmod(partial.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    partial.replace(target)


def main(argv: list[str], index: str = INDEX) -> int:
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    target, spec = Path(argv[1]), argv[2]
    have = installed_version(target)
    if have is not None and in_range(have, spec):
        return 0
    tags = platform_tags()
    if not tags:
        raise SystemExit(f"bootstrap-uv: no uv wheel is known for {sys.platform} {platform.machine()}")
    print(f"bootstrap-uv: fetching uv {spec} from {index} into {target}", file=sys.stderr)
    project, project_url = fetch_json(f"{index}/uv/json")
    releases = project.get("releases")
    if not isinstance(releases, dict):
        raise SystemExit(f"bootstrap-uv: {project_url} lists no releases")
    found = next(candidates(releases, spec, tags), None)
    if found is None:
        raise SystemExit(f"bootstrap-uv: no uv release {spec} has a wheel for {', '.join(tags[:3])}, ...")
    version, file = found
    digests = file.get("digests")
    sha256 = digests.get("sha256") if isinstance(digests, dict) else None
    if not sha256:
        raise SystemExit(f"bootstrap-uv: the index lists no sha256 for {file['filename']}; not installed")
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as scratch:
        wheel = Path(scratch) / str(file["filename"])
        download(urljoin(project_url, str(file["url"])), str(sha256), wheel)
        extract(wheel, "uv.exe" if sys.platform == "win32" else "uv", target)
    got = installed_version(target)
    if got is None:
        raise SystemExit(f"bootstrap-uv: {target} (uv {version}) does not run on this machine")
    print(f"bootstrap-uv: uv {version} is in {target}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
