"""deploy/bootstrap-uv.py, which `make setup` runs where the Python has no uv and pip cannot install
one (Debian's own python3: PEP 668), against an index on loopback that answers as PyPI's JSON API."""

from __future__ import annotations

import hashlib
import importlib.util
import io
import json
import os
import subprocess
import sys
import threading
import zipfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
RANGE = ">=0.5,<1"


def load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bootstrap_uv", ROOT / "deploy" / "bootstrap-uv.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


bootstrap = load_script()
needs_a_wheel_platform = pytest.mark.skipif(not bootstrap.platform_tags(), reason="no uv wheel for this platform")


def fake_wheel(version: str, tag: str) -> tuple[str, bytes]:
    """A wheel laid out as uv's: the executable under ``uv-<version>.data/scripts/``."""
    name = f"uv-{version}-py3-none-{tag}.whl"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("uv/__init__.py", "")
        archive.writestr(f"uv-{version}.data/scripts/uv", f"#!/bin/sh\necho 'uv {version} (fake)'\n")
    return name, buffer.getvalue()


class Index:
    """PyPI's JSON API on loopback; file URLs relative to the JSON, as a mirror gives them."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.releases: dict[str, list[dict[str, Any]]] = {}
        self.requests: list[str] = []

    def add(self, version: str, tag: str, *, yanked: bool = False, sha256: str | None = None) -> None:
        name, data = fake_wheel(version, tag)
        self.files[name] = data
        self.releases.setdefault(version, []).append(
            {
                "filename": name,
                "url": f"../../files/{name}",
                "yanked": yanked,
                "digests": {"sha256": sha256 or hashlib.sha256(data).hexdigest()},
            }
        )

    def answer(self, path: str) -> bytes | None:
        self.requests.append(path)
        if path == "/pypi/uv/json":
            return json.dumps({"info": {"name": "uv"}, "releases": self.releases}).encode()
        return self.files.get(path.removeprefix("/files/"))


@pytest.fixture
def index() -> Iterator[tuple[Index, str]]:
    served = Index()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = served.answer(self.path)
            self.send_response(200 if body is not None else 404)
            self.send_header("Content-Length", str(len(body or b"")))
            self.end_headers()
            self.wfile.write(body or b"")

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield served, f"http://127.0.0.1:{server.server_address[1]}/pypi"
    finally:
        server.shutdown()
        server.server_close()


@needs_a_wheel_platform
def test_the_newest_release_in_range_with_a_wheel_for_this_machine_is_installed(
    index: tuple[Index, str], tmp_path: Path
) -> None:
    served, url = index
    tag = bootstrap.platform_tags()[0]
    served.add("1.0.0", tag)  # out of range
    served.add("0.9.2", tag, yanked=True)
    served.add("0.9.1", "win_amd64" if not tag.startswith("win") else "manylinux_2_17_x86_64")  # no wheel here
    served.add("0.9.0", tag)
    served.add("0.8.0", tag)
    served.releases["0.9.3rc1"] = served.releases["0.9.0"]  # pre-releases are passed over
    target = tmp_path / ".tools" / "uv"
    assert bootstrap.main(["bootstrap-uv.py", str(target), RANGE], index=url) == 0
    assert subprocess.run([target, "--version"], capture_output=True, text=True, check=True).stdout.startswith(
        "uv 0.9.0 "
    )
    assert os.access(target, os.X_OK)
    assert sorted(p.name for p in target.parent.iterdir()) == ["uv"]  # no download or partial file left

    served.requests.clear()  # one in range is kept without asking the index
    assert bootstrap.main(["bootstrap-uv.py", str(target), RANGE], index=url) == 0
    assert served.requests == []


@needs_a_wheel_platform
def test_a_wheel_not_matching_the_listed_sha256_is_not_installed(index: tuple[Index, str], tmp_path: Path) -> None:
    served, url = index
    served.add("0.9.0", bootstrap.platform_tags()[0], sha256="0" * 64)
    target = tmp_path / ".tools" / "uv"
    with pytest.raises(SystemExit, match="sha256"):
        bootstrap.main(["bootstrap-uv.py", str(target), RANGE], index=url)
    assert list(target.parent.iterdir()) == []


def test_versions_ranges_and_wheel_tags_are_read_as_pip_reads_them() -> None:
    assert bootstrap.parse_version("0.13.10") == (0, 13, 10)
    assert bootstrap.parse_version("1.0.0") == bootstrap.parse_version("1")
    assert bootstrap.parse_version("0.9.3rc1") is None
    assert bootstrap.in_range((0, 5), RANGE)
    assert bootstrap.in_range((0, 13, 10), RANGE)
    assert not bootstrap.in_range((0, 4, 30), RANGE)
    assert not bootstrap.in_range((1,), RANGE)
    assert bootstrap.wheel_platforms("uv-0.13.10-py3-none-manylinux_2_17_x86_64.manylinux2014_x86_64.whl") == {
        "manylinux_2_17_x86_64",
        "manylinux2014_x86_64",
    }


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc tags")
def test_a_glibc_machine_takes_manylinux_wheels_of_its_glibc_and_older() -> None:
    glibc = bootstrap.glibc_version()
    if glibc is None:
        pytest.skip("not a glibc system")
    tags = bootstrap.platform_tags()
    arch = tags[-1].removeprefix("linux_")
    assert tags[0] == f"manylinux_{glibc[0]}_{glibc[1]}_{arch}"
    if glibc >= (2, 17):
        assert f"manylinux_2_17_{arch}" in tags
        assert f"manylinux2014_{arch}" in tags


def make_dry_run(*args: str) -> str:
    """What make would run (-n), outside the `make test` that may have started this suite."""
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    return subprocess.run(["make", "-n", *args], cwd=ROOT, env=env, capture_output=True, text=True, check=True).stdout


def test_make_setup_fetches_uv_where_the_python_has_none() -> None:
    out = make_dry_run("setup", "PYTHON=false")  # `false -m uv` fails as a Python without uv does
    assert 'false deploy/bootstrap-uv.py .tools/uv ">=0.5,<1"' in out
    assert "UV_PYTHON=false .tools/uv sync --all-packages --frozen" in out
    assert ".tools/" in (ROOT / ".gitignore").read_text("utf-8").splitlines()


def test_make_setup_keeps_the_pythons_own_uv() -> None:
    out = make_dry_run("setup", "PYTHON=true")  # `true -m uv --version` succeeds as a Python with uv does
    assert "\ntrue -m uv sync --all-packages --frozen\n" in out
