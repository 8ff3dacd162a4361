"""Build the numpywren AWS Lambda layer zip, reproducibly.

    python layers/build.py --arch x86_64|arm64 [--runtime python3.13] [--out DIR] [--wheel-dir DIR]
    python -m numpywren layer build --arch ...          (same thing)

The pinned wheels for the Lambda runtime's Python (``--runtime``: python3.11
pins ``layers/requirements.txt``, manylinux2014 for Amazon Linux 2; python3.12
and python3.13 pin ``layers/requirements-python3.1x.txt``, manylinux2014 or
manylinux_2_28 for Amazon Linux 2023; pip resolves wheels for that Python
whatever Python runs the build) for the chosen architecture (numpy and scipy
each bundle an OpenBLAS) are checked against each other's requirements
(``check_pins_agree``: e.g. scipy's numpy range) and unpacked into
``python/`` with the numpywren worker code, tests and caches are stripped, and
the tree is zipped with sorted entries and fixed timestamps, so the same
inputs give the same bytes. A manifest (packages, versions, architecture,
BLAS, sizes) goes into the zip as ``python/numpywren_layer.json`` and beside
it as ``<zip>.json``, with the runtime and Python version. When the Python
running the build is the runtime's, the layer also ships hash-based ``.pyc``
files (checked against their source, compiled with ``/opt/python`` paths, so
builds stay reproducible; cold imports are faster, and Lambda cannot write
them into the read-only layer itself). The build fails if the unzipped size exceeds Lambda's
250 MB limit. Wheels are cached in ``~/.cache/numpywren-wheels/<arch>`` (python3.11) or ``.../<runtime>/<arch>``
(``$NUMPYWREN_WHEEL_CACHE`` overrides the root); ``--wheel-dir`` builds
offline from a folder of wheels. boto3 is not included (Lambda's runtime ships
it) unless ``--with-sdk`` asks for the pinned one. ``--blas mkl`` (x86_64; the ``auto`` default picks it
where gcc and objdump are on PATH, see ``resolve_blas``) adds
``lib/libnumpywren_mkl.so`` (``layers/mkl_lib.py``: MKL trimmed to the tile
kernels' routines), which ``blocks.blas`` finds at ``/opt/lib`` on Lambda.
"""
from __future__ import annotations

import argparse
import compileall
import hashlib
import py_compile
import json
import logging
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
if str(ROOT) not in sys.path:  # run as a script from the source tree: its numpywren holds the runtime table
    sys.path.insert(0, str(ROOT))
from numpywren.deploy import RUNTIME as DEFAULT_RUNTIME, RUNTIMES  # noqa: E402

log = logging.getLogger(__name__)
REQUIREMENTS = HERE / "requirements.txt"
SDK_REQUIREMENTS = HERE / "requirements-sdk.txt"  # --with-sdk: boto3 in the layer, not the runtime's
PYTHON_VERSION = RUNTIMES["python3.11"]  # the Python of requirements.txt
PLATFORMS = {"x86_64": "manylinux2014_x86_64", "arm64": "manylinux2014_aarch64"}
#: Amazon Linux 2023 runtimes (glibc 2.34) also load manylinux_2_28 wheels.
AL2023_PLATFORMS = {"x86_64": "manylinux_2_28_x86_64", "arm64": "manylinux_2_28_aarch64"}
MACHINE = {"x86_64": "x86_64", "arm64": "aarch64"}  # the wheel tag's name for the architecture
#: Lambda's limit on a function's unzipped code and layers together (250 MB as AWS counts it).
UNZIPPED_LIMIT = 262_144_000
#: Our code in the layer: the worker imports these packages.
OWN_PACKAGES = ("numpywren", "blocks")
STRIP_DIRS = {"tests", "__pycache__"}
#: Files under a stripped ``tests/`` that library code imports: numpy.testing (which scipy imports on
#: ``import scipy.linalg``, via array_api_compat) needs numpy 2.x's ``_natype``.
KEEP_FILES = ("numpy/_core/tests/_natype.py",)
STRIP_SUFFIXES = (".pyc", ".pyo")
FIXED_TIME = (1980, 1, 1, 0, 0, 0)
#: --blas choices. ``auto`` (the default) is MKL where it can be built (``resolve_blas``), else OpenBLAS: by the
#: rule "MKL if >= 5% faster by median", on a quiet machine MKL / OpenBLAS was 1.18 over 14 one-core cells and
#: 1.3-1.6x on whole Cholesky and TSQR jobs (layers/README.md, "BLAS").
BLAS_CHOICES = ("auto", "openblas", "mkl")
DEFAULT_BLAS = "auto"
#: the tools layers/mkl_lib.py links and checks the MKL library with
MKL_TOOLS = ("gcc", "objdump")


def resolve_blas(blas: str, arch: str, wheel_dir: str | Path | None = None) -> tuple[str, str]:
    """``(openblas|mkl, why)``: ``auto`` is MKL on an x86_64 layer built on Linux with gcc and objdump on PATH
    (and, for an offline ``wheel_dir`` build, the mkl-static wheel already cached), OpenBLAS otherwise (arm64 has
    no MKL; a laptop without gcc still builds); an explicit choice is kept as given."""
    if blas not in BLAS_CHOICES:
        raise ValueError(f"blas must be one of {BLAS_CHOICES}, got {blas!r}")
    if blas != "auto":
        return blas, f"--blas {blas}"
    if arch != "x86_64":
        return "openblas", f"auto: Intel MKL has no {arch} build"
    if not sys.platform.startswith("linux"):
        return "openblas", f"auto: the MKL library is linked on Linux only (this is {sys.platform})"
    missing = [t for t in MKL_TOOLS if shutil.which(t) is None]
    if missing:
        return "openblas", f"auto: {' and '.join(missing)} not on PATH (needed to link the MKL library)"
    if wheel_dir is not None:
        try:
            _mkl_lib().wheel_path(download=False)
        except FileNotFoundError:
            return "openblas", "auto: offline build (--wheel-dir) and the mkl-static wheel is not cached"
    return "mkl", "auto: x86_64 with gcc and objdump"


class LayerTooLargeError(RuntimeError):
    """The unzipped layer would not fit Lambda's 250 MB limit."""


def requirements_for(runtime: str) -> Path:
    """The pinned requirements of a runtime (python3.11 keeps the original requirements.txt)."""
    if runtime not in RUNTIMES:
        raise ValueError(f"runtime must be one of {sorted(RUNTIMES)}, got {runtime!r}")
    return REQUIREMENTS if runtime == "python3.11" else HERE / f"requirements-{runtime}.txt"


def platforms_for(runtime: str, arch: str) -> list[str]:
    return [PLATFORMS[arch]] + ([] if runtime == "python3.11" else [AL2023_PLATFORMS[arch]])


def pins(requirements: Path = REQUIREMENTS) -> dict[str, str]:
    """name -> version from the pinned requirements file."""
    out = {}
    for line in requirements.read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, _, version = line.partition("==")
            if not version:
                raise ValueError(f"{requirements}: {line!r} is not pinned with ==")
            out[_norm(name)] = version.strip()
    return out


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


def wheel_cache(arch: str, runtime: str = "python3.11") -> Path:
    root = Path(os.environ.get("NUMPYWREN_WHEEL_CACHE", "~/.cache/numpywren-wheels")).expanduser()
    return root / arch if runtime == "python3.11" else root / runtime / arch


def download_wheels(arch: str, dest: Path, requirements: Path = REQUIREMENTS, runtime: str = "python3.11") -> None:
    """pip download the pinned wheels for the runtime's Python and ``arch`` into ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    version = RUNTIMES[runtime]
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           *[a for p in platforms_for(runtime, arch) for a in ("--platform", p)],
           "--python-version", version, "--implementation", "cp",
           "--abi", "cp" + version.replace(".", ""), "--dest", str(dest), "-r", str(requirements)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"pip download of the layer's wheels failed ({' '.join(cmd)}):\n{proc.stderr[-2000:]}")


def find_wheels(wheel_dir: Path, arch: str, wanted: dict[str, str], runtime: str = "python3.11") -> dict[str, Path]:
    """The wheel for each pinned package in ``wheel_dir``, checked for the runtime's CPython and ``arch``."""
    cp = "cp" + RUNTIMES[runtime].replace(".", "")
    found: dict[str, Path] = {}
    for path in sorted(wheel_dir.glob("*.whl")):
        name, version, *_rest, py, abi, plat = path.stem.split("-")
        name = _norm(name)
        if wanted.get(name) != version:
            continue
        pure = plat == "any" and abi == "none" and "py3" in py.split(".")
        native = (abi == cp and "manylinux" in plat
                  and any(t.endswith("_" + MACHINE[arch]) for t in plat.split(".")))
        if pure or native:
            found[name] = path
    missing = sorted(set(wanted) - set(found))
    if missing:
        raise FileNotFoundError(f"no {arch} {cp} wheel for {', '.join(f'{m}=={wanted[m]}' for m in missing)} "
                                f"in {wheel_dir}")
    return found


def check_pins_agree(wheels: dict[str, Path], wanted: dict[str, str], runtime: str = "python3.11") -> None:
    """Fail unless every pin satisfies what the other pinned wheels require of it (e.g. scipy's numpy range).

    The wheels are installed with --no-deps, so pip never checks this itself."""
    try:
        from packaging.requirements import Requirement
    except ImportError:  # pip vendors it
        from pip._vendor.packaging.requirements import Requirement
    env = {"python_version": RUNTIMES[runtime], "python_full_version": RUNTIMES[runtime] + ".0",
           "sys_platform": "linux", "platform_system": "Linux", "implementation_name": "cpython",
           "platform_python_implementation": "CPython", "extra": ""}
    for name in sorted(wheels):
        with zipfile.ZipFile(wheels[name]) as zf:
            meta = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA") and n.count("/") == 1)
            lines = zf.read(meta).decode().splitlines()
        for line in lines:
            if not line.startswith("Requires-Dist:"):
                continue
            req = Requirement(line.partition(":")[2].strip())
            dep = _norm(req.name)
            if dep in wanted and (req.marker is None or req.marker.evaluate(env)) \
                    and not req.specifier.contains(wanted[dep], prereleases=True):
                raise ValueError(f"{dep}=={wanted[dep]} does not satisfy {name}=={wanted[name]}'s requirement "
                                 f"{req.name}{req.specifier}: change one of the pins")


def _unpack_wheel(wheel: Path, site: Path) -> None:
    with zipfile.ZipFile(wheel) as zf:
        zf.extractall(site)
    for data in site.glob("*.data"):  # purelib/platlib belong in site-packages; scripts/headers do not
        for sub in ("purelib", "platlib"):
            if (data / sub).is_dir():
                shutil.copytree(data / sub, site, dirs_exist_ok=True)
        shutil.rmtree(data)


def _copy_own_code(site: Path) -> None:
    for package in OWN_PACKAGES:
        shutil.copytree(ROOT / package, site / package,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "tests"))


def _strip(site: Path) -> None:
    keep = {site / name: (site / name).read_bytes() for name in KEEP_FILES if (site / name).is_file()}
    for path in sorted(site.rglob("*"), reverse=True):
        if path.is_dir() and path.name in STRIP_DIRS:
            shutil.rmtree(path)
        elif path.is_file() and path.name.endswith(STRIP_SUFFIXES):
            path.unlink()
    for path, data in keep.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def _blas(site: Path) -> str:
    """numpy's and scipy's bundled OpenBLAS: two separate libraries (numpy's ILP64, scipy's LP64)."""
    found = []
    for package in ("numpy", "scipy"):
        libs = sorted(p.name for p in (site / f"{package}.libs").glob("*openblas*"))
        if libs:
            found.append(f"OpenBLAS, bundled in {package}'s manylinux wheel ({libs[0]})")
    return "; ".join(found) or "unknown (no OpenBLAS library in numpy.libs)"


def _mkl_lib():
    """``layers/mkl_lib.py`` (a sibling tool file, loaded by path like this one)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("numpywren_layers_mkl_lib", HERE / "mkl_lib.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _zip_tree(top: Path, zip_path: Path) -> None:
    """Zip ``top``'s contents with sorted entries, fixed times and modes: same tree, same bytes."""
    files = sorted((p for p in top.rglob("*") if p.is_file()), key=lambda p: p.relative_to(top).as_posix())
    with zipfile.ZipFile(zip_path, "w", zipfile.ZIP_DEFLATED, compresslevel=6) as zf:
        for path in files:
            info = zipfile.ZipInfo(path.relative_to(top).as_posix(), date_time=FIXED_TIME)
            info.create_system = 3  # unix, so the modes below are honoured
            executable = path.suffix == ".so" or ".so." in path.name or os.access(path, os.X_OK)
            info.external_attr = (0o100755 if executable else 0o100644) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, path.read_bytes(), compresslevel=6)


def _compile(top: Path, runtime: str) -> str:
    """Hash-based pycs for the runtime's Python, if that is the Python running here (else none)."""
    here = f"{sys.version_info.major}.{sys.version_info.minor}"
    if here != RUNTIMES[runtime]:
        return f"none (built with Python {here}, the runtime runs {RUNTIMES[runtime]})"
    ok = compileall.compile_dir(top / "python", quiet=2, stripdir=str(top), prependdir="/opt", workers=1,
                                invalidation_mode=py_compile.PycInvalidationMode.CHECKED_HASH)
    if not ok:
        raise RuntimeError(f"compiling the layer's Python files for {runtime} failed")
    return f"checked-hash pycs for CPython {here}"


def build_layer(arch: str = "x86_64", out_dir: str | Path | None = None,
                wheel_dir: str | Path | None = None, with_sdk: bool = False,
                blas: str = DEFAULT_BLAS, runtime: str = DEFAULT_RUNTIME) -> tuple[Path, dict]:
    """Build ``numpywren-layer[-<runtime>]-<arch>.zip`` (``-mkl.zip`` with ``blas="mkl"``); return its path and
    manifest.

    With ``wheel_dir`` the build is offline; otherwise missing wheels are
    downloaded into the cache first. ``with_sdk`` adds the pinned boto3 stack.
    """
    if arch not in PLATFORMS:
        raise ValueError(f"arch must be one of {sorted(PLATFORMS)}, got {arch!r}")
    blas, blas_reason = resolve_blas(blas, arch, wheel_dir)
    log.info("layer BLAS: %s (%s)", blas, blas_reason)
    if blas == "mkl" and arch != "x86_64":
        raise ValueError(f"--blas mkl needs --arch x86_64: Intel MKL has no {arch} build")
    base = requirements_for(runtime)
    requirements = [base, SDK_REQUIREMENTS] if with_sdk else [base]
    wanted = {name: v for r in requirements for name, v in pins(r).items()}
    if wheel_dir is None:
        wheel_dir = wheel_cache(arch, runtime)
        try:
            wheels = find_wheels(wheel_dir, arch, wanted, runtime)
        except FileNotFoundError:
            for r in requirements:
                download_wheels(arch, wheel_dir, r, runtime)
            wheels = find_wheels(wheel_dir, arch, wanted, runtime)
    else:
        wheels = find_wheels(Path(wheel_dir), arch, wanted, runtime)
    check_pins_agree(wheels, wanted, runtime)
    out_dir = Path(out_dir) if out_dir else HERE / "dist"
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"numpywren-layer-{arch}" if runtime == "python3.11" else f"numpywren-layer-{runtime}-{arch}"
    zip_path = out_dir / f"{stem}{'-mkl' if blas == 'mkl' else ''}.zip"
    with tempfile.TemporaryDirectory(prefix="numpywren-layer-") as tmp:
        top = Path(tmp)
        site = top / "python"  # Lambda puts a layer's python/ on sys.path
        site.mkdir()
        for name in sorted(wheels):
            _unpack_wheel(wheels[name], site)
        _copy_own_code(site)
        _strip(site)
        mkl = None
        if blas == "mkl":  # Lambda mounts the layer's lib/ at /opt/lib, where blocks.blas looks
            _lib_path, mkl = _mkl_lib().build(top / "lib", runtime)
        pycs = _compile(top, runtime)
        manifest = {
            "format": 1, "runtime": runtime, "python_version": RUNTIMES[runtime],
            "architecture": arch, "platform": PLATFORMS[arch], "platforms": platforms_for(runtime, arch),
            "pyc": pycs,
            "packages": {name: wanted[name] for name in sorted(wanted)},
            "wheels": {wheels[n].name: hashlib.sha256(wheels[n].read_bytes()).hexdigest() for n in sorted(wheels)},
            "own_code": list(OWN_PACKAGES), "blas": _blas(site), "blas_choice": blas_reason,
            **({"mkl": mkl, "tile_kernels_blas": f"MKL {mkl['mkl_version']} ({mkl['library']}, sequential)"}
               if mkl else {"tile_kernels_blas": "numpy's"}),
            "not_included": {} if with_sdk else {"boto3": "shipped by Lambda's python runtime"},
            "unzipped_limit_bytes": UNZIPPED_LIMIT,
        }
        files = [p for p in top.rglob("*") if p.is_file()]
        manifest["files"] = len(files) + 1  # and the manifest itself
        manifest["unzipped_bytes"] = sum(p.stat().st_size for p in files)  # (without the manifest)
        text = json.dumps(manifest, indent=1, sort_keys=True)
        (site / "numpywren_layer.json").write_text(text)
        manifest["unzipped_bytes"] += len(text)
        if manifest["unzipped_bytes"] > UNZIPPED_LIMIT:
            raise LayerTooLargeError(f"the {arch} layer unzips to {manifest['unzipped_bytes'] / 1e6:.1f} MB, over "
                                     f"Lambda's limit of {UNZIPPED_LIMIT / 1e6:.1f} MB")
        _zip_tree(top, zip_path)
    data = zip_path.read_bytes()
    manifest.update(zip=zip_path.name, zipped_bytes=len(data), sha256=hashlib.sha256(data).hexdigest())
    Path(f"{zip_path}.json").write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    return zip_path, manifest


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("action", nargs="?", default="build", choices=["build"])
    p.add_argument("--arch", choices=sorted(PLATFORMS), default="x86_64")
    p.add_argument("--out", help="output folder (default layers/dist)")
    p.add_argument("--wheel-dir", help="build offline from the wheels in this folder")
    p.add_argument("--with-sdk", action="store_true", help="include boto3 (layers/requirements-sdk.txt)")
    p.add_argument("--blas", choices=BLAS_CHOICES, default=DEFAULT_BLAS,
                   help=f"BLAS of the tile kernels (default {DEFAULT_BLAS}: MKL on x86_64 when gcc and objdump "
                        "are on PATH, else OpenBLAS; mkl: x86_64 only)")
    p.add_argument("--runtime", choices=sorted(RUNTIMES), default=DEFAULT_RUNTIME)
    args = p.parse_args(argv)
    zip_path, m = build_layer(args.arch, args.out, args.wheel_dir, with_sdk=args.with_sdk, blas=args.blas,
                              runtime=args.runtime)
    print(f"{zip_path}: {m['zipped_bytes'] / 1e6:.1f} MB zipped, {m['unzipped_bytes'] / 1e6:.1f} MB unzipped "
          f"(limit {UNZIPPED_LIMIT / 1e6:.1f} MB); {m['blas']}; tile kernels: {m['tile_kernels_blas']} "
          f"({m['blas_choice']}); sha256 {m['sha256']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
