"""Link a small MKL shared library holding only the routines the tile kernels call.

    python layers/mkl_lib.py [--runtime python3.13] [--out DIR]     (layers/build.py --blas mkl calls it)

Intel's answer to MKL's size (the sequential shared libraries for every CPU family are ~320 MB, over
Lambda's 250 MB) is a custom library linked from the static archives: ``libmkl_intel_lp64.a`` +
``libmkl_sequential.a`` + ``libmkl_core.a`` from the ``mkl-static`` wheel, keeping only what the
exported routines (``blocks.blas.ROUTINES`` in single and double precision, ``COMPLEX_ROUTINES`` in complex64
and complex128; Fortran LP64 interface)
reach, with MKL's run-time dispatch to every x86-64 CPU family intact. ~15 MB, links in a second.

glibc: linked here (glibc 2.36), MKL's references to ``dlopen``, ``pthread_key_create``, ``log`` ...
would bind to GLIBC_2.29/2.34 versions, which Amazon Linux 2 (python3.11, glibc 2.26) lacks. Each
such symbol is redirected (``ld --wrap``) to a two-instruction trampoline that calls the symbol's
original x86-64 version (GLIBC_2.2.5), which every glibc still exports. The result is then checked
with ``objdump -T``: if any referenced GLIBC version is above the target runtime's, the build fails
(``GlibcTooNewError``) instead of shipping a library that cannot load.

Reproducible: fixed inputs (a pinned wheel, checked by sha256 after download), no build id, stripped,
the same link line: the same bytes (checked by ``tests/test_blas.py``). The wheel (~213 MB) is
downloaded once into ``layers/.cache/mkl`` (``$NUMPYWREN_MKL_CACHE`` moves it; gitignored).
"""
from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
MKL_VERSION = "2024.2.2"  # the newest mkl-static with a manylinux1 (glibc 2.5) x86_64 wheel
WHEEL = f"mkl_static-{MKL_VERSION}-py2.py3-none-manylinux1_x86_64.whl"
WHEEL_SHA256 = "908586f768f312fba3b3ce0dda9b8bf086c5246d0e4d1f48ef80fa7eb60764ec"
ARCHIVES = ("libmkl_intel_lp64.a", "libmkl_sequential.a", "libmkl_core.a")
LIB_NAME = "libnumpywren_mkl.so"
#: Highest glibc each Lambda Python runtime's OS provides (Amazon Linux 2: 2.26; Amazon Linux 2023: 2.34).
RUNTIME_GLIBC = {"python3.11": (2, 26), "python3.12": (2, 34), "python3.13": (2, 34)}
#: The x86-64 base version of glibc: every symbol that existed then is still exported under it.
GLIBC_BASE = "GLIBC_2.2.5"
#: deploy's default runtime (numpywren.deploy.RUNTIME; a test keeps them equal): Lambda no longer creates
#: python3.11 functions, so a library built by default must serve Amazon Linux 2023 (glibc 2.34).
DEFAULT_RUNTIME = "python3.13"
EXTRA_EXPORTS = ("mkl_get_version_string",)


class GlibcTooNewError(RuntimeError):
    """The linked library needs a newer glibc than the target runtime's OS provides."""


def routines() -> list[str]:
    """The exported Fortran symbols: d/s variants of every routine the tile kernels call, and z/c variants of
    the complex ones."""
    sys.path.insert(0, str(ROOT))
    try:
        from blocks.blas import COMPLEX_ROUTINES, ROUTINES
    finally:
        sys.path.pop(0)
    return [p + r + "_" for r in ROUTINES for p in "ds"] + [p + r + "_" for r in COMPLEX_ROUTINES for p in "zc"]


def cache_dir() -> Path:
    return Path(os.environ.get("NUMPYWREN_MKL_CACHE", HERE / ".cache" / "mkl"))


def wheel_path(download: bool = True) -> Path:
    """The cached mkl-static wheel; downloaded with pip when absent (and ``download``)."""
    path = cache_dir() / WHEEL
    if not path.is_file():
        if not download:
            raise FileNotFoundError(f"{path} not found (python layers/mkl_lib.py downloads it, ~213 MB)")
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--platform", "manylinux1_x86_64", "--python-version", "3.11", "--implementation", "cp",
               "--dest", str(path.parent), f"mkl-static=={MKL_VERSION}"]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0 or not path.is_file():
            raise RuntimeError(f"pip download of mkl-static failed ({' '.join(cmd)}):\n{proc.stderr[-2000:]}")
    return path


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _archives(wheel: Path) -> Path:
    """The three static archives, unpacked once next to the wheel."""
    out = wheel.parent / f"mkl-{MKL_VERSION}-static"
    if all((out / a).is_file() for a in ARCHIVES):
        return out
    out.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheel) as zf:
        for name in ARCHIVES:
            member = f"mkl_static-{MKL_VERSION}.data/data/lib/{name}"
            with zf.open(member) as src, open(out / (name + ".part"), "wb") as dst:
                shutil.copyfileobj(src, dst)
            os.replace(out / (name + ".part"), out / name)
    return out


def glibc_versions(lib: Path) -> dict[str, tuple[int, ...]]:
    """symbol -> the GLIBC version it references (``objdump -T``)."""
    out = subprocess.run(["objdump", "-T", str(lib)], capture_output=True, text=True, check=True).stdout
    found = {}
    for line in out.splitlines():
        m = re.search(r"\(?GLIBC_([0-9.]+)\)?\s+(\S+)$", line)
        if m and "*UND*" in line:
            found[m.group(2)] = tuple(int(x) for x in m.group(1).split("."))
    return found


def _trampolines(symbols: list[str]) -> str:
    """Assembly: ``__wrap_<s>`` jumps to ``<s>@GLIBC_2.2.5`` (arguments untouched: a tail jump)."""
    lines = []
    for s in symbols:
        lines += [f".symver {s}_glibc_base, {s}@{GLIBC_BASE}", f".globl __wrap_{s}", f".hidden __wrap_{s}",
                  f".type __wrap_{s},@function", f"__wrap_{s}:", f"  jmp {s}_glibc_base@PLT"]
    lines.append('.section .note.GNU-stack,"",@progbits')
    return "\n".join(lines) + "\n"


def _link(archives: Path, out: Path, exports: list[str], wrap: list[str], work: Path) -> None:
    (work / "exports.map").write_text("{ global:\n" + "".join(f"  {s};\n" for s in exports) + "local: *; };\n")
    cmd = ["gcc", "-shared", "-o", str(out), "-Wl,--version-script=exports.map", "-Wl,--build-id=none", "-s"]
    cmd += [f"-Wl,-u,{s}" for s in exports]
    if wrap:
        (work / "glibc_base.s").write_text(_trampolines(wrap))
        subprocess.run(["gcc", "-c", "glibc_base.s", "-o", "glibc_base.o"], cwd=work, check=True)
        cmd += ["glibc_base.o"] + [f"-Wl,--wrap={s}" for s in wrap]
        # Before glibc 2.34 dlopen and pthread_key_* live in libdl / libpthread: load them with the library.
        cmd += ["-Wl,--no-as-needed", "-l:libdl.so.2", "-l:libpthread.so.0", "-Wl,--as-needed"]
    cmd += ["-Wl,--start-group", *(str(archives / a) for a in ARCHIVES), "-Wl,--end-group",
            "-lpthread", "-lm", "-ldl"]
    proc = subprocess.run(cmd, cwd=work, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"linking {out.name} failed ({' '.join(cmd)}):\n{proc.stderr[-3000:]}")


def build(out_dir: str | Path, runtime: str = DEFAULT_RUNTIME, *, download: bool = True) -> tuple[Path, dict]:
    """Link ``<out_dir>/libnumpywren_mkl.so`` for ``runtime``; return its path and a manifest entry.

    ``GlibcTooNewError`` if it would need a newer glibc than the runtime's OS.
    """
    if runtime not in RUNTIME_GLIBC:
        raise ValueError(f"runtime must be one of {sorted(RUNTIME_GLIBC)}, got {runtime!r}")
    for tool in ("gcc", "objdump"):
        if shutil.which(tool) is None:
            raise FileNotFoundError(f"building the MKL library needs {tool} (binutils/gcc) on PATH")
    wheel = wheel_path(download)
    digest = sha256(wheel)
    if digest != WHEEL_SHA256:
        raise RuntimeError(f"{wheel} has sha256 {digest}, expected {WHEEL_SHA256}: delete it and download again")
    archives = _archives(wheel)
    limit = RUNTIME_GLIBC[runtime]
    exports = routines() + list(EXTRA_EXPORTS)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / LIB_NAME
    with tempfile.TemporaryDirectory(prefix="numpywren-mkl-") as tmp:
        work = Path(tmp)
        _link(archives, work / LIB_NAME, exports, [], work)
        too_new = sorted(s for s, v in glibc_versions(work / LIB_NAME).items() if v > limit)
        if too_new:  # bind those to glibc's base versions, then check again
            _link(archives, work / LIB_NAME, exports, too_new, work)
        versions = glibc_versions(work / LIB_NAME)
        worst = max(versions.values(), default=(2, 2, 5))
        if worst > limit:
            bad = sorted(f"{s}@GLIBC_{'.'.join(map(str, v))}" for s, v in versions.items() if v > limit)
            raise GlibcTooNewError(f"{LIB_NAME} references {', '.join(bad)}, newer than glibc "
                                   f"{'.'.join(map(str, limit))} of the {runtime} runtime: it could not load there")
        shutil.copyfile(work / LIB_NAME, out)
    info = {"library": f"lib/{LIB_NAME}", "mkl_version": MKL_VERSION, "wheel": WHEEL, "wheel_sha256": digest,
            "archives": list(ARCHIVES), "threading": "sequential", "interface": "Fortran LP64",
            "routines": routines(), "glibc_max": "GLIBC_" + ".".join(map(str, worst)),
            "glibc_wrapped_to_base": too_new, "runtime_glibc": ".".join(map(str, limit)),
            "bytes": out.stat().st_size, "sha256": sha256(out)}
    return out, info


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runtime", choices=sorted(RUNTIME_GLIBC), default=DEFAULT_RUNTIME)
    p.add_argument("--out", default=str(cache_dir() / "build"), help="output folder (default layers/.cache/mkl/build)")
    args = p.parse_args(argv)
    path, info = build(args.out, args.runtime)
    print(f"{path}: {info['bytes'] / 1e6:.1f} MB, MKL {info['mkl_version']}, needs {info['glibc_max']} "
          f"(runtime {args.runtime}: glibc {info['runtime_glibc']}), sha256 {info['sha256']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
