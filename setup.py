"""Build step of ``pip install``: mailwire's kernels compiled ahead of time.

Everything else about the package is declared in ``pyproject.toml``. The one extension module,
``mailwire._aot``, is not C source: it is produced by :func:`mailwire.compiled.build` (Numba's
``pycc``) from the kernels in the package, in a child process so that the kernels are imported in
JIT mode. If that fails, the install goes on without it and the kernels are JIT-compiled at first
use instead (slower start, same results); the warning says why.
"""

from __future__ import annotations

import os
import subprocess
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

HERE = os.path.dirname(os.path.abspath(__file__))


class BuildKernels(build_ext):
    def run(self) -> None:
        built = []
        for ext in self.extensions:
            if self._compile(ext):
                built.append(ext)
        self.extensions = built  # nothing to copy or install for a build that failed
        self.force = False

    def build_extension(self, ext: Extension) -> None:  # run() builds; kept for setuptools' API
        self._compile(ext)

    def _compile(self, ext: Extension) -> bool:
        target = os.path.abspath(self.get_ext_fullpath(ext.name))
        os.makedirs(os.path.dirname(target), exist_ok=True)
        # pip's isolated build environment rewrites sys.path at start-up (PYTHONPATH is dropped),
        # so the child puts the source tree first itself
        env = dict(os.environ, MAILWIRE_JIT="1")
        code = (
            "import sys; sys.path.insert(0, sys.argv[2]); "
            "from mailwire.compiled import build; build(sys.argv[1])"
        )
        src = os.path.join(HERE, "src")
        try:
            subprocess.run(
                [sys.executable, "-c", code, target, src], env=env, check=True, timeout=1800, cwd=HERE
            )
        except (OSError, subprocess.SubprocessError) as exc:
            self.warn(
                f"mailwire: kernels not compiled ahead of time ({exc}); "
                "Numba's JIT compiles them at first use instead"
            )
            return False
        return os.path.exists(target)


setup(ext_modules=[Extension("mailwire._aot", sources=[])], cmdclass={"build_ext": BuildKernels})
