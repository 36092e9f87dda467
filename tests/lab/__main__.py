"""Regenerate lab captures by hand (root only).

python -m tests.lab list
python -m tests.lab run [SCENARIO ...] --out DIR     # default: every scenario
python -m tests.lab example [--out examples/incident] # the bundled size_drop example
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

from tests.lab import scenarios
from tests.lab.netns import LabUnavailable, check_prerequisites
from tests.lab.runner import REPO_ROOT, run_scenario

EXAMPLE_FILES = ("sender.pcap", "edge.pcap", "maillog", "truth.json")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m tests.lab", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("list", help="list the scenarios")
    run = sub.add_parser("run", help="run scenarios; one directory per scenario under --out")
    run.add_argument("scenario", nargs="*", help="scenario names (default: all)")
    run.add_argument("--out", required=True, type=Path)
    ex = sub.add_parser("example", help="regenerate examples/incident from the size_drop scenario")
    ex.add_argument("--out", type=Path, default=REPO_ROOT / "examples" / "incident")
    args = ap.parse_args(argv)

    if args.cmd == "list":
        for s in scenarios.SCENARIOS.values():
            print(f"{s.name:26} {s.description}")
        return 0
    try:
        check_prerequisites()
    except LabUnavailable as exc:
        print(f"lab unavailable: {exc}", file=sys.stderr)
        return 2
    if args.cmd == "run":
        names = args.scenario or list(scenarios.SCENARIOS)
        for n in names:
            scenarios.get(n)
        total = time.monotonic()
        for n in names:
            t = time.monotonic()
            d = run_scenario(n, args.out / n)
            rec = json.loads((d / "truth.json").read_text())
            fates = ", ".join(f"{m['rcpt'].split('@')[0]}={m['observed_outcome']}" for m in rec["messages"])
            print(f"{n:26} {time.monotonic() - t:6.1f}s  {fates}", flush=True)
        print(f"total {time.monotonic() - total:.1f}s")
        return 0
    # example
    with tempfile.TemporaryDirectory(prefix="mailwire-example-") as tmp:
        d = run_scenario("size_drop", Path(tmp) / "size_drop")
        args.out.mkdir(parents=True, exist_ok=True)
        for f in EXAMPLE_FILES:
            shutil.copyfile(d / f, args.out / f)
    print(f"wrote {', '.join(EXAMPLE_FILES)} to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
