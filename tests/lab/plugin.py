"""pytest plugin: the session-scoped ``lab_run`` fixture that other test directories use.

``lab_run(name) -> Path`` returns the directory of scenario ``name`` (``sender.pcap``,
``edge.pcap``, ``recv.pcap``, ``maillog``, ``receiver.jsonl``, ``truth.json``), running the scenario
at most once per test session. With ``MAILWIRE_LAB_DIR`` set, scenarios are kept under that
directory and a scenario directory that already holds a ``truth.json`` is reused as it is (no root
needed then), for fast iteration. Without root or a system tool, the test is skipped with a reason
naming what is missing.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.lab import scenarios
from tests.lab.netns import LabUnavailable, check_prerequisites
from tests.lab.runner import run_scenario

LAB_DIR_ENV = "MAILWIRE_LAB_DIR"
NEEDED = ("sender.pcap", "edge.pcap", "maillog", "truth.json")


def _complete(d: Path) -> bool:
    return all((d / f).is_file() for f in NEEDED)


class LabCache:
    """Scenario name → its directory under ``root``, each scenario run at most once.

    ``reuse``: a scenario directory that already has its files is taken as it is.
    """

    def __init__(
        self, root: Path, *, reuse: bool, runner: Callable[[str, Path], Path] = run_scenario
    ) -> None:
        self.root, self.reuse, self.runner = root, reuse, runner
        self.done: dict[str, Path] = {}
        self.failed: dict[str, str] = {}

    def __call__(self, name: str) -> Path:
        scenarios.get(name)  # unknown names fail loudly
        if name in self.done:
            return self.done[name]
        if name in self.failed:
            pytest.fail(f"lab scenario {name} failed earlier in this session: {self.failed[name]}")
        d = self.root / name
        if self.reuse and _complete(d):
            self.done[name] = d
            return d
        try:
            check_prerequisites()
        except LabUnavailable as exc:
            pytest.skip(str(exc))
        try:
            self.runner(name, d)
        except Exception as exc:
            self.failed[name] = f"{type(exc).__name__}: {exc}"
            raise
        self.done[name] = d
        return d


@pytest.fixture(scope="session")
def lab_run(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    env = os.environ.get(LAB_DIR_ENV)
    root = Path(env) if env else tmp_path_factory.mktemp("lab")
    return LabCache(root, reuse=bool(env))
