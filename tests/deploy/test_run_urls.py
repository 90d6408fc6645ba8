"""The URLs `make run` gives people (printed, and in standalone mode the card's QR code) name a host
a browser can open: loopback for "every address", an IPv6 address in brackets."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

RUN_PY = Path(__file__).resolve().parents[2] / "deploy" / "run.py"


def run_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("deploy_run", RUN_PY)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    ("listened_on", "in_urls"),
    [("0.0.0.0", "127.0.0.1"), ("::", "127.0.0.1"), ("::1", "[::1]"), ("192.168.1.5", "192.168.1.5")],  # noqa: S104
)
def test_urls_name_a_host_a_browser_opens(listened_on: str, in_urls: str) -> None:
    run = run_module()
    options = run.parse_args(["--host", listened_on])
    assert run.reachable_host(options) == in_urls


def test_the_banner_says_when_the_phone_card_would_show_names_as_boxes(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from identity import cards

    run = run_module()
    monkeypatch.delenv("IDENTITY_CARD_FONT_PATH", raising=False)
    monkeypatch.setattr(cards, "find_font", lambda configured: configured)  # no font installed
    note = "\n".join(run.card_font_note())
    assert "fonts-wqy-microhei" in note
    assert "IDENTITY_CARD_FONT_PATH" in note
    font = tmp_path / "wqy-microhei.ttc"
    font.write_bytes(b"")
    monkeypatch.setenv("IDENTITY_CARD_FONT_PATH", str(font))
    assert run.card_font_note() == []
