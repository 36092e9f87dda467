"""The lab_run machinery without building anything: caching, reuse, and skip reasons."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.lab import netns
from tests.lab.plugin import NEEDED, LabCache


def _fake_run(calls: list[str]) -> Callable[[str, Path], Path]:
    def run(name: str, out: Path) -> Path:
        calls.append(name)
        out.mkdir(parents=True, exist_ok=True)
        for f in NEEDED:
            (out / f).write_text("x")
        return out

    return run


def test_each_scenario_runs_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("tests.lab.plugin.check_prerequisites", lambda: None)
    calls: list[str] = []
    cache = LabCache(tmp_path, reuse=False, runner=_fake_run(calls))
    assert cache("healthy") == tmp_path / "healthy"
    assert cache("healthy") == tmp_path / "healthy"
    cache("size_drop")
    assert calls == ["healthy", "size_drop"]
    with pytest.raises(KeyError, match="unknown lab scenario"):
        cache("no_such_scenario")


def test_reuse_needs_no_root_and_runs_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_run([])("healthy", tmp_path / "healthy")
    monkeypatch.setattr(netns.os, "geteuid", lambda: 1000)
    calls: list[str] = []
    cache = LabCache(tmp_path, reuse=True, runner=_fake_run(calls))
    assert cache("healthy") == tmp_path / "healthy"
    assert calls == []


def test_not_root_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(netns.os, "geteuid", lambda: 1000)
    with pytest.raises(netns.LabUnavailable, match="needs root"):
        netns.check_prerequisites()


def test_missing_tool_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(netns.os, "geteuid", lambda: 0)
    monkeypatch.setattr(netns.shutil, "which", lambda t: None if t == "tcpdump" else f"/usr/bin/{t}")
    monkeypatch.setattr(netns.os.path, "exists", lambda p: not str(p).endswith("/tcpdump"))
    with pytest.raises(netns.LabUnavailable, match=r"missing system tools: tcpdump \(scripts/install"):
        netns.check_prerequisites()


def test_failed_scenario_is_not_retried(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("tests.lab.plugin.check_prerequisites", lambda: None)
    calls: list[str] = []

    def boom(name: str, out: Path) -> Path:
        calls.append(name)
        raise RuntimeError("postfix did not start")

    cache = LabCache(tmp_path, reuse=False, runner=boom)
    with pytest.raises(RuntimeError):
        cache("healthy")
    with pytest.raises(pytest.fail.Exception, match="failed earlier"):
        cache("healthy")
    assert calls == ["healthy"]
