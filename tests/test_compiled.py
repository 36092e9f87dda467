"""The compiled kernels: the install-time (ahead-of-time) build is the one tested, it computes what
Numba's JIT computes, and a call that does not match a kernel's signature is refused, never run."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import numpy as np
import pytest

from mailwire import compiled
from mailwire.capture import pcap

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "incident"
SHARED = ROOT.parent / "shared" / "captures"


def test_signature_arguments() -> None:
    specs = compiled._arg_specs("Tuple((i8, i8, i8))(u1[::1], i8, b1, i8[:, ::1], u4[:, :, ::1])")
    assert specs == [("uint8", 1), None, None, ("int64", 2), ("uint32", 3)]
    assert compiled._arg_specs("UniTuple(i8, 3)(u2[::1])") == [("uint16", 1)]
    assert compiled._arg_specs("void()") == []
    with pytest.raises(ValueError, match="unsupported"):
        compiled._arg_specs("void(i8[:])")  # any-layout arrays are not accepted: C layout only


def test_every_kernel_has_a_readable_signature() -> None:
    reg = compiled.registry()
    # the entry points the capture and TCP stages call, at least
    for name in (
        "capture_pcap_walk",
        "capture_pcapng_walk",
        "tcp_analysis_run_kernel",
        "tcp_reassembly_plan",
    ):
        assert name in reg
    for name, (_fn, sig) in reg.items():
        assert compiled._arg_specs(sig) is not None, name


def _walk_args(out_dtype: type = np.int64, step: int = 1) -> tuple[object, ...]:
    buf = np.zeros(64, np.uint8)
    outs = [np.zeros(8 * step, out_dtype)[::step] for _ in range(5)]
    return (buf, 0, 64, False, 262144, *outs)


@pytest.mark.parametrize(
    ("dtype", "step", "why"),
    [(np.int32, 1, "int32"), (np.int64, 2, "C-contiguous")],
    ids=["wrong dtype", "strided"],
)
def test_mismatched_arrays_are_refused(dtype: type, step: int, why: str) -> None:
    """Ahead-of-time code would read an int32 or strided array as raw int64 memory: refused."""
    with pytest.raises(TypeError, match=why):
        pcap._walk(*_walk_args(dtype, step))
    n, pos, status = pcap._walk(*_walk_args())  # the declared types run
    assert (n, pos, status) == (4, 64, 0)  # four empty records (16-byte headers, no data), then the end


def test_the_install_built_the_kernels_from_these_sources() -> None:
    """``pip install -e .`` compiles the kernels; tests must exercise that build, not a stale one."""
    built = list((ROOT / "src" / "mailwire").glob("_aot.*"))
    assert built, "mailwire._aot missing: the install did not compile the kernels (pip printed why)"
    assert compiled.mode() == "aot", (
        "mailwire._aot was built from other kernel sources: run `pip install -e .` again"
    )


_STALE = """
import warnings, zlib
warnings.simplefilter("always")
crc = zlib.crc32
zlib.crc32 = lambda data, value=0: crc(data, value) ^ 1  # as if a kernel source had been edited
import mailwire.compiled as c
print(c.mode())
"""


@pytest.mark.skipif(not list((ROOT / "src" / "mailwire").glob("_aot.*")), reason="no ahead-of-time build")
def test_a_stale_build_is_reported() -> None:
    """Kernel sources edited after the install: the JIT is used, and stderr says why (a silent
    fallback costs about 1 s and 100 MB a run and once passed for a regression)."""
    env = {k: v for k, v in os.environ.items() if k != "MAILWIRE_JIT"}
    p = subprocess.run([sys.executable, "-c", _STALE], capture_output=True, text=True, timeout=120, env=env)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "jit"
    assert "RuntimeWarning" in p.stderr and "pip install -e ." in p.stderr
    fresh = subprocess.run(
        [sys.executable, "-W", "always", "-c", "import mailwire.compiled as c; print(c.mode())"],
        capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip
    assert fresh.stdout.strip() == compiled.mode() and "RuntimeWarning" not in fresh.stderr


# Per capture: every packet-table column, every per-frame TCP field and the analyze document
_DIGEST = """
import hashlib, json, sys
import numpy as np
from mailwire.analyze import analyze_captures
from mailwire.capture.read import CaptureError, iter_tables
from mailwire.tcp.engine import analyze
out = {}
for path in sys.argv[1:]:
    h = hashlib.sha256()
    try:
        tables = list(iter_tables(path))
    except CaptureError as exc:
        out[path] = str(exc)
        continue
    for t in tables:
        for k in sorted(t.columns):
            h.update(k.encode() + np.ascontiguousarray(t.columns[k]).tobytes())
    res = analyze(iter(tables))
    for k in sorted(res.frames):
        h.update(k.encode() + np.ascontiguousarray(res.frames[k]).tobytes())
    doc = analyze_captures([path]).to_json()
    h.update(json.dumps(doc, sort_keys=True, default=str).encode())
    out[path] = h.hexdigest()
print(json.dumps(out))
"""


def _digests(paths: list[Path], jit: bool) -> dict[str, str]:
    env = dict(os.environ, MAILWIRE_JIT="1" if jit else "0")
    p = subprocess.run(
        [sys.executable, "-c", _DIGEST, *map(str, paths)],
        capture_output=True, text=True, timeout=1200, env=env, check=False,
    )  # fmt: skip
    assert p.returncode == 0, p.stderr[-3000:]
    return dict(json.loads(p.stdout))


@pytest.mark.skipif(compiled.mode() != "aot", reason="no current ahead-of-time build to compare")
def test_ahead_of_time_and_jit_agree() -> None:
    """The same captures through both builds: every packet column, every per-frame TCP field and
    the whole analyze document are equal (the corpus when present, else the bundled example)."""
    caps = [EXAMPLE / "sender.pcap", EXAMPLE / "edge.pcap"]
    if SHARED.is_dir():
        caps += sorted(p for p in SHARED.iterdir() if p.suffix in (".pcap", ".pcapng"))
    aot, jit = _digests(caps, jit=False), _digests(caps, jit=True)
    assert len(aot) == len(caps)
    differ = sorted(k for k in aot if aot[k] != jit.get(k))
    assert not differ, differ


def test_a_build_leaves_no_scratch_files(tmp_path: Path) -> None:
    """The ahead-of-time build as ``pip install`` runs it (a child process, kernels in JIT mode),
    into a fresh target: the module is made, loads, and carries the digest of these sources; and
    the temporary directory it was given is as empty afterwards as before (pycc's compiler probe
    used to leave two directories there at every install)."""
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    suffix = sysconfig.get_config_var("EXT_SUFFIX")
    target = tmp_path / "out" / f"_aot{suffix}"
    target.parent.mkdir()
    code = "import sys; from mailwire.compiled import build; build(sys.argv[1])"
    env = dict(os.environ, MAILWIRE_JIT="1", TMPDIR=str(scratch))
    r = subprocess.run(
        [sys.executable, "-c", code, str(target)], env=env, capture_output=True, text=True, timeout=900
    )
    assert r.returncode == 0, r.stderr[-2000:]
    assert target.is_file()
    spec = importlib.util.spec_from_file_location("_aot", target)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.source_digest() == compiled.source_digest()
    assert list(scratch.iterdir()) == []
