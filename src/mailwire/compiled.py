"""Where the compiled loops come from: machine code built at install time, else Numba's JIT.

Theory of operation
-------------------
The few inherently sequential scans (record walks, the per-flow TCP state, reassembly plans) are
written once, as Numba-compatible Python, and declared with :func:`kernel` (entry points called
from Python, with their one type signature) or :func:`helper` (functions only kernels call).

``pip install`` compiles every kernel ahead of time into the extension module
``mailwire._aot`` (``setup.py`` runs :func:`build`, Numba's ``pycc``). At run time that module is
used when it was built from the kernel sources as they are now (:func:`source_digest`, a CRC of
the kernel modules, is compiled into it); then Numba is never imported, which is most of the
start-up time of a command (measured: importing Numba and loading its cached kernels cost about
0.9 s, more than the rest of a small capture's analysis). When the module is missing or stale
(a kernel was edited after the install) or ``MAILWIRE_JIT=1`` is set, the kernels are compiled by
Numba's JIT as before (cached on disk), so a checkout works without a build.

Ahead-of-time code trusts its arguments' types: an array of another dtype, dimension or layout
would be read as raw memory. :class:`_Checked` therefore checks every array argument against the
signature (a few microseconds a call; kernels are called per chunk, never per packet) and raises
``TypeError`` instead, in both modes: the JIT would otherwise compile a second specialisation
silently, one the ahead-of-time build does not have. Kernels never call kernels (only helpers),
so the check wraps every entry point.

This module knows nothing about packets; it only finds and loads machine code.
"""

from __future__ import annotations

import os
import re
import warnings
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])

# The modules whose kernels are compiled ahead of time (paths relative to the package).
KERNEL_MODULES = (
    "capture/pcap.py",
    "capture/pcapng.py",
    "capture/decode.py",
    "tcp/analysis.py",
    "tcp/reassembly.py",
    "tcp/summary.py",
    "compare/flows.py",
)

_PKG = Path(__file__).resolve().parent
_REGISTRY: dict[str, tuple[Callable[..., Any], str]] = {}  # export name -> (python function, signature)


def source_digest() -> int:
    """CRC-32 of this module and every kernel module, as they are on disk now."""
    crc = 0
    for rel in ("compiled.py", *KERNEL_MODULES):
        crc = zlib.crc32((_PKG / rel).read_bytes(), crc)
    return crc


def _load_aot() -> Any:
    if os.environ.get("MAILWIRE_JIT", "") not in ("", "0"):
        return None
    try:
        from mailwire import _aot  # type: ignore[attr-defined]
    except ImportError:
        return None
    try:
        if int(_aot.source_digest()) != source_digest():
            # a kernel changed since the install: say so, the JIT costs about 1 s and 100 MB a run
            warnings.warn(
                "mailwire: the compiled kernels were built from other sources than these; "
                "using Numba's JIT instead (slower). Run `pip install -e .` again to rebuild them.",
                RuntimeWarning,
                stacklevel=2,
            )
            return None
    except (OSError, AttributeError):
        return None
    return _aot


AOT = _load_aot()


def mode() -> str:
    """``"aot"`` when the kernels run from the install-time build, ``"jit"`` otherwise."""
    return "aot" if AOT is not None else "jit"


# --- signatures ---------------------------------------------------------------------------------
# A small subset of Numba's signature language: scalars i1..i8, u1..u8, f8, b1; C-contiguous
# arrays written X[::1], X[:, ::1], X[:, :, ::1].
_DTYPES = {
    "i1": "int8", "i2": "int16", "i4": "int32", "i8": "int64",
    "u1": "uint8", "u2": "uint16", "u4": "uint32", "u8": "uint64",
    "f8": "float64", "b1": "bool",
}  # fmt: skip
_ARRAY = re.compile(r"^(\w+)\[((?::, )*)::1\]$")


def _split_args(sig: str) -> list[str]:
    """The argument types of ``ret(a, b, …)``: the last top-level parenthesis group, split at
    its top-level commas (array brackets and tuple return types may hold commas)."""
    sig = sig.strip()
    if not sig.endswith(")"):
        raise ValueError(f"not a signature: {sig!r}")
    depth, inner = 0, ""
    for i in range(len(sig) - 1, -1, -1):
        if sig[i] == ")":
            depth += 1
        elif sig[i] == "(":
            depth -= 1
            if depth == 0:
                inner = sig[i + 1 : -1]
                break
    args, cur, depth = [], "", 0
    for ch in inner:
        depth += ch in "[("
        depth -= ch in "])"
        if ch == "," and depth == 0:
            args.append(cur.strip())
            cur = ""
        else:
            cur += ch
    if cur.strip():
        args.append(cur.strip())
    return args


def _arg_specs(sig: str) -> list[tuple[str, int] | None]:
    """Per argument: (NumPy dtype name, dimensions) for arrays, None for scalars."""
    out: list[tuple[str, int] | None] = []
    for a in _split_args(sig):
        m = _ARRAY.match(a)
        if m:
            out.append((_DTYPES[m.group(1)], m.group(2).count(":") + 1))
        elif a in _DTYPES:
            out.append(None)
        else:
            raise ValueError(f"unsupported kernel argument type {a!r} in {sig!r}")
    return out


class _Checked:
    """An ahead-of-time kernel behind a type check of its array arguments."""

    __slots__ = ("__name__", "_arrays", "_fn", "_n", "_specs")

    def __init__(self, name: str, fn: Callable[..., Any], sig: str) -> None:
        import numpy as np

        self.__name__ = name
        self._fn = fn
        self._specs = _arg_specs(sig)
        self._n = len(self._specs)
        # (position, dtype, dimensions) of the array arguments; dtypes compare as objects (fast)
        self._arrays = [(i, np.dtype(s[0]), s[1]) for i, s in enumerate(self._specs) if s is not None]

    def __call__(self, *args: Any) -> Any:
        if len(args) != self._n:
            raise TypeError(f"{self.__name__}: {len(args)} arguments, the signature has {self._n}")
        for i, dtype, ndim in self._arrays:
            a = args[i]
            try:
                ok = a.dtype == dtype and a.ndim == ndim and a.flags.c_contiguous
            except AttributeError:
                ok = False
            if not ok:
                spec = self._specs[i]
                assert spec is not None
                got = f"{getattr(a, 'dtype', type(a).__name__)}, {getattr(a, 'ndim', '?')}-d"
                want = f"a C-contiguous {spec[1]}-d {spec[0]} array"
                raise TypeError(f"{self.__name__}: argument {i} must be {want}, got {got}")
        return self._fn(*args)


def _export_name(fn: Callable[..., Any]) -> str:
    parts = fn.__module__.split(".")[-2:]  # e.g. ("capture", "pcap")
    return "_".join([*parts, fn.__name__.lstrip("_")])


def kernel(sig: str) -> Callable[[F], F]:
    """Declare a compiled entry point with its one signature (Numba's notation, C-contiguous
    arrays). Returns the ahead-of-time function when the build is current, else Numba's JIT."""

    def deco(fn: F) -> F:
        name = _export_name(fn)
        if name in _REGISTRY:
            raise ValueError(f"two kernels export {name}")
        _arg_specs(sig)  # a signature the checker cannot read fails at import, in every mode
        _REGISTRY[name] = (fn, sig)
        if AOT is not None and hasattr(AOT, name):
            return _Checked(name, getattr(AOT, name), sig)  # type: ignore[return-value]
        import numba

        # checked in JIT mode too: a call site drifting from the signature fails here, in tests,
        # rather than compiling a second specialisation that the ahead-of-time build lacks
        return _Checked(name, numba.njit(cache=True)(fn), sig)  # type: ignore[return-value]

    return deco


def helper(*, inline: bool = False) -> Callable[[F], F]:
    """Declare a function kernels call (``inline``: copied into each caller). With the
    ahead-of-time build it is compiled into its callers and stays plain Python here."""

    def deco(fn: F) -> F:
        if AOT is not None:
            return fn
        import numba

        if inline:
            return numba.njit(cache=True, inline="always")(fn)  # type: ignore[return-value]
        return numba.njit(cache=True)(fn)  # type: ignore[return-value]

    return deco


def registry() -> dict[str, tuple[Callable[..., Any], str]]:
    """Every declared kernel: export name -> (Python function, signature). Importing the kernel
    modules fills it (see :func:`build`)."""
    import importlib

    for rel in KERNEL_MODULES:
        importlib.import_module("mailwire." + rel.removesuffix(".py").replace("/", "."))
    return dict(_REGISTRY)


def build(target: str) -> str:
    """Compile every kernel into the extension module file ``target`` (its name must be
    ``_aot`` plus the interpreter's extension suffix) with Numba's pycc; return ``target``.
    Must run in a process where the kernels were imported in JIT mode (``MAILWIRE_JIT=1`` set
    before the first import of mailwire)."""
    if AOT is not None:
        raise RuntimeError("build() needs the JIT kernels: set MAILWIRE_JIT=1 before importing mailwire")
    import shutil
    import tempfile

    # pycc's probe of the C compiler leaves its scratch directory behind (two per build, in the
    # system's temporary directory): everything pycc makes goes into one of ours, removed after
    scratch = tempfile.mkdtemp(prefix="mailwire-build-")
    default, tempfile.tempdir = tempfile.tempdir, scratch
    try:
        return _build(target)
    finally:
        tempfile.tempdir = default
        shutil.rmtree(scratch, ignore_errors=True)


def _build(target: str) -> str:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pycc announces its own pending deprecation
        from numba.pycc import CC

    out = Path(target)
    cc = CC("_aot")
    cc.output_dir = str(out.parent)
    cc.output_file = out.name
    cc.verbose = False
    for name, (fn, sig) in sorted(registry().items()):
        cc.export(name, sig)(fn)
    digest = source_digest()

    def digest_fn() -> int:
        return digest

    cc.export("source_digest", "i8()")(digest_fn)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cc.compile()
    return str(out)


__all__ = ["AOT", "KERNEL_MODULES", "build", "helper", "kernel", "mode", "registry", "source_digest"]
