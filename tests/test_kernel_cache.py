"""numba's cache kept in step with the kernels' sources (recsys.kernel_cache), on a small
package whose cached kernel calls a kernel of another file, run in fresh interpreters."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from recsys.kernel_cache import STAMP, fingerprint, refresh

REPO = Path(__file__).resolve().parents[1]

CALLER = """from numba import njit

from kpkg.callee import value


@njit(cache=True)
def doubled():
    return 2 * value()
"""


def _write_callee(package: Path, value: int) -> None:
    """The callee's file, one second newer than before (numba's stamp: mtime and size)."""
    path = package / "callee.py"
    before = path.stat().st_mtime if path.exists() else 0.0
    path.write_text(f"from numba import njit\n\n\n@njit(cache=True)\ndef value():\n"
                    f"    return {value}\n")
    os.utime(path, (before + 1, before + 1) if before else None)


def _package(root: Path) -> Path:
    package = root / "kpkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "caller.py").write_text(CALLER)
    _write_callee(package, 1)
    return package


def _doubled(root: Path, *, refreshed: bool) -> int:
    """``kpkg.caller.doubled()`` in a fresh interpreter (numba's cache as left on disk)."""
    code = "\n".join([
        "import sys", "from pathlib import Path", "sys.path.insert(0, sys.argv[1])",
        *(["from recsys.kernel_cache import refresh",
           "refresh(Path(sys.argv[1]) / 'kpkg')"] if refreshed else []),
        "from kpkg.caller import doubled", "print(doubled())"])
    env = {k: v for k, v in os.environ.items() if not k.startswith("NUMBA_")}
    env["PYTHONPATH"] = str(REPO)
    out = subprocess.run([sys.executable, "-c", code, str(root)], capture_output=True,
                         text=True, env=env, check=True, timeout=300)
    return int(out.stdout.strip())


def test_a_changed_callee_reaches_the_cached_caller(tmp_path: Path) -> None:
    plain, fixed = tmp_path / "plain", tmp_path / "fixed"
    plain.mkdir()
    fixed.mkdir()
    packages = {"plain": _package(plain), "fixed": _package(fixed)}
    assert _doubled(plain, refreshed=False) == _doubled(fixed, refreshed=True) == 2
    assert list((packages["fixed"] / "__pycache__").glob("caller.*.nbi"))  # cached
    for package in packages.values():
        _write_callee(package, 5)
    # numba alone: the caller comes from its cache, with the old callee compiled in
    assert _doubled(plain, refreshed=False) == 2
    assert _doubled(fixed, refreshed=True) == 10
    assert _doubled(fixed, refreshed=True) == 10  # and cached again


def test_refresh_drops_the_cache_only_when_a_kernel_source_changed(tmp_path: Path) -> None:
    package = _package(tmp_path)
    cache = package / "__pycache__"
    cache.mkdir()
    made = [cache / "caller.doubled-6.py311.nbi", cache / "caller.doubled-6.py311.1.nbc"]
    for path in made:
        path.write_bytes(b"compiled")
    assert refresh(package)  # no stamp: the cache's sources are unknown
    assert not any(p.exists() for p in made)
    assert (cache / STAMP).read_text() == fingerprint(package)
    for path in made:
        path.write_bytes(b"compiled")
    (package / "notes.py").write_text("TEXT = 'no kernel here'\n")  # not a kernel source
    assert not refresh(package)
    assert all(p.exists() for p in made)
    _write_callee(package, 7)
    assert refresh(package)
    assert not any(p.exists() for p in made)
    assert not refresh(package)


def test_the_package_is_stamped_on_import() -> None:
    import recsys

    package = Path(recsys.__file__).parent
    stamp = package / "__pycache__" / STAMP
    if os.access(package, os.W_OK):
        assert stamp.read_text() == fingerprint(package)
