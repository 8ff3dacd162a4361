"""The Lambda layer build: manifest, architecture of every native library, size limit, reproducibility,
and the built layer's own numpy, scipy and numpywren running GEMM, Cholesky (potrf) and TSQR tiles through
the Lambda handler."""
from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import scipy.linalg

from numpywren import BigMatrix
from numpywren.dag import Task
from numpywren.deploy import load_layer_builder
from numpywren.executors.base import Executor

build = load_layer_builder()
ELF_MACHINE = {"x86_64": 62, "arm64": 183}  # e_machine of x86-64 and AArch64 ELF files


@pytest.fixture(scope="module")
def wheel_dirs():
    """The pinned wheels for both architectures, from the cache (downloaded once if the registry answers)."""
    dirs = {}
    for arch in ("x86_64", "arm64"):
        d = build.wheel_cache(arch)
        try:
            build.find_wheels(d, arch, build.pins())
        except FileNotFoundError:
            try:
                build.download_wheels(arch, d)
            except RuntimeError as e:
                pytest.skip(f"the pinned wheels are not cached in {d} and the package registry is "
                            f"unreachable, so the layer cannot be built here: {str(e)[-300:]}")
        dirs[arch] = d
    return dirs


@pytest.fixture(scope="module")
def layers(wheel_dirs, tmp_path_factory):
    out = {}
    for arch, d in wheel_dirs.items():
        out[arch] = build.build_layer(arch, tmp_path_factory.mktemp(arch), wheel_dir=d, runtime="python3.11",
                                      blas="openblas")
    return out


@pytest.mark.parametrize("arch", ["x86_64", "arm64"])
def test_manifest_packages_architecture_and_size(layers, arch):
    zip_path, manifest = layers[arch]
    assert manifest["architecture"] == arch and manifest["runtime"] == "python3.11"
    assert manifest["packages"] == build.pins()
    assert {"numpy", "scipy", "numexpr", "cloudpickle"} <= set(manifest["packages"])
    assert "numpy's manylinux wheel" in manifest["blas"] and "scipy's manylinux wheel" in manifest["blas"]
    assert json.loads(Path(f"{zip_path}.json").read_text()) == manifest
    with zipfile.ZipFile(zip_path) as zf:
        infos = zf.infolist()
        inner = json.loads(zf.read("python/numpywren_layer.json"))
        names = [i.filename for i in infos]
        assert names == sorted(names)
        assert {i.date_time for i in infos} == {build.FIXED_TIME}
        unzipped = sum(i.file_size for i in infos)
        assert unzipped == manifest["unzipped_bytes"] < build.UNZIPPED_LIMIT
        assert inner["packages"] == manifest["packages"] and inner["architecture"] == arch
        assert all(n.startswith("python/") for n in names)
        for must in ("python/numpywren/worker/lambda_handler.py", "python/numpywren/worker/handler.py",
                     "python/numpywren/worker/ops.py", "python/numpywren/protocol.py", "python/numpywren/tiled.py",
                     "python/numpywren/tile.py", "python/numpywren/storage/s3.py", "python/blocks/gemm.py",
                     "python/blocks/cholesky.py", "python/blocks/qr.py", "python/numpy/__init__.py",
                     "python/scipy/linalg/__init__.py", "python/numexpr/__init__.py", "python/cloudpickle/__init__.py"):
            assert must in names
        kept = {"python/" + k for k in build.KEEP_FILES}  # numpy.testing (imported by scipy) needs these
        assert kept <= set(names)
        kept_dirs = tuple(k.rsplit("/", 1)[0] + "/" for k in kept)  # (and their pycs)
        parts = {p for n in names if not n.startswith(kept_dirs) for p in n.split("/")[:-1]}
        assert {n for n in names if n.startswith(kept_dirs) and not n.endswith(".pyc")} == kept
        assert "tests" not in parts  # pycs: hash-based, for this Python (3.11 = the runtime), under /opt paths
        assert manifest["pyc"].startswith("checked-hash pycs for CPython 3.11")
        pyc = zf.read("python/numpywren/worker/__pycache__/lambda_handler.cpython-311.pyc")
        assert int.from_bytes(pyc[4:8], "little") == 0b11  # hash-based, checked against the source
        assert b"/opt/python/numpywren/worker/lambda_handler.py" in pyc
        assert not any(n.startswith(("python/boto3/", "python/botocore/")) for n in names)
        libs = [i for i in infos if i.filename.endswith(".so") or ".so." in i.filename]
        for package in ("numpy", "scipy"):  # each wheel bundles its own OpenBLAS
            assert any(i.filename.startswith(f"python/{package}.libs/") and "openblas" in i.filename for i in libs)
        for info in libs:  # every native library is an ELF file for the layer's architecture
            head = zf.read(info)[:20]
            assert head[:4] == b"\x7fELF", info.filename
            assert int.from_bytes(head[18:20], "little") == ELF_MACHINE[arch], info.filename
            assert (info.external_attr >> 16) & 0o111, f"{info.filename} is not executable"


def test_build_is_reproducible(layers, wheel_dirs, tmp_path):
    zip_path, manifest = layers["x86_64"]
    again, m2 = build.build_layer("x86_64", tmp_path, wheel_dir=wheel_dirs["x86_64"], runtime="python3.11",
                                 blas="openblas")
    with zipfile.ZipFile(zip_path) as z1, zipfile.ZipFile(again) as z2:
        e1 = [(i.filename, i.CRC, i.external_attr, i.date_time) for i in z1.infolist()]
        e2 = [(i.filename, i.CRC, i.external_attr, i.date_time) for i in z2.infolist()]
    assert e1 == e2, sorted(set(e1) ^ set(e2))[:6]
    assert hashlib.sha256(again.read_bytes()).hexdigest() == manifest["sha256"] == m2["sha256"]


def test_offline_build_names_the_missing_wheel(wheel_dirs, tmp_path):
    for wheel in wheel_dirs["x86_64"].glob("*.whl"):
        if not wheel.name.startswith("numexpr"):
            (tmp_path / wheel.name).symlink_to(wheel)
    with pytest.raises(FileNotFoundError, match=r"numexpr==\d"):
        build.build_layer("x86_64", tmp_path / "out", wheel_dir=tmp_path, runtime="python3.11", blas="openblas")
    with pytest.raises(FileNotFoundError, match="numpy=="):  # arm64 wheels are not x86_64 wheels
        build.find_wheels(wheel_dirs["arm64"], "x86_64", build.pins())


def test_auto_blas_is_mkl_on_x86_64_with_the_toolchain_and_openblas_otherwise(monkeypatch, tmp_path):
    monkeypatch.setattr(build.sys, "platform", "linux")
    monkeypatch.setattr(build.shutil, "which", lambda tool: f"/usr/bin/{tool}")
    assert build.DEFAULT_BLAS == "auto"
    assert build.resolve_blas("auto", "x86_64") == ("mkl", "auto: x86_64 with gcc and objdump")
    blas, why = build.resolve_blas("auto", "arm64")
    assert blas == "openblas" and "no arm64 build" in why
    assert build.resolve_blas("openblas", "x86_64") == ("openblas", "--blas openblas")
    assert build.resolve_blas("mkl", "x86_64")[0] == "mkl"
    monkeypatch.setenv("NUMPYWREN_MKL_CACHE", str(tmp_path))   # an offline build with no mkl-static wheel cached
    blas, why = build.resolve_blas("auto", "x86_64", wheel_dir=tmp_path)
    assert blas == "openblas" and "not cached" in why
    monkeypatch.setattr(build.shutil, "which", lambda tool: None if tool == "gcc" else f"/usr/bin/{tool}")
    blas, why = build.resolve_blas("auto", "x86_64")
    assert blas == "openblas" and "gcc not on PATH" in why     # a laptop without gcc still builds
    monkeypatch.setattr(build.sys, "platform", "darwin")
    assert build.resolve_blas("auto", "x86_64")[0] == "openblas"
    with pytest.raises(ValueError, match="blas must be one of"):
        build.resolve_blas("atlas", "x86_64")


def test_an_auto_layer_says_which_blas_it_chose(wheel_dirs, tmp_path):
    zip_path, manifest = build.build_layer("arm64", tmp_path, wheel_dir=wheel_dirs["arm64"], runtime="python3.11")
    assert zip_path.name == "numpywren-layer-arm64.zip" and "mkl" not in manifest
    assert manifest["blas_choice"] == "auto: Intel MKL has no arm64 build"
    assert manifest["tile_kernels_blas"] == "numpy's"


def test_pins_must_satisfy_each_others_requirements(wheel_dirs):
    """The wheels are installed with --no-deps: scipy's numpy range is checked by the build itself."""
    wanted = build.pins()
    wheels = build.find_wheels(wheel_dirs["x86_64"], "x86_64", wanted)
    build.check_pins_agree(wheels, wanted)
    with pytest.raises(ValueError, match=r"numpy==2\.9\.0 does not satisfy scipy==.*numpy"):
        build.check_pins_agree(wheels, {**wanted, "numpy": "2.9.0"})


class _Capture(Executor):
    """The base executor's event building, with delivery replaced by a list."""

    workers = 1

    def __init__(self, store):
        super().__init__(store)
        self.events = []

    def _invoke(self, event):
        self.events.append(event)


#: Run as on Lambda, under ``python -I`` (no PYTHONPATH, user site or script folder): the layer's python/ first
#: on the path (its numpy, scipy, numexpr, cloudpickle, numpywren); boto3 comes from the runtime (here: this
#: interpreter's site-packages, after the layer).
_SANDBOX = (
    "import sys\n"
    "sys.path.insert(0, sys.argv.pop(1))\n"
    "import json, numpy, scipy, numpywren\n"
    "from numpywren.worker.lambda_handler import handler\n"
    "class Ctx:\n"
    "    def get_remaining_time_in_millis(self): return 60000\n"
    "status = [handler(json.loads(event), Ctx()) for event in sys.argv[1:]]\n"
    "print(json.dumps({'numpy': numpy.__version__, 'numpy_file': numpy.__file__, 'scipy': scipy.__version__,"
    " 'scipy_file': scipy.__file__, 'scipy_linalg_file': getattr(sys.modules.get('scipy.linalg'), '__file__', None),"
    " 'numpywren_file': numpywren.__file__, 'status': status}))\n")


def _run_in_layer(layer, events, tmp_path):
    """Run the events through the layer's Lambda handler in a fresh interpreter; return its report."""
    zip_path, manifest = layer
    opt = tmp_path / "opt"
    with zipfile.ZipFile(zip_path) as zf:
        zf.extractall(opt)
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-I", "-c", _SANDBOX, str(opt / "python"), *map(json.dumps, events)],
                          env=env, capture_output=True, text=True, timeout=180, cwd=tmp_path, check=False)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert (out["numpy"], out["scipy"]) == (manifest["packages"]["numpy"], manifest["packages"]["scipy"])
    for name in ("numpy_file", "scipy_file", "numpywren_file"):  # the layer's, not ours
        assert out[name].startswith(str(opt / "python")), (name, out[name])
    return out


def _rel(got, want):
    return np.linalg.norm(got - want) / np.linalg.norm(want)


@pytest.mark.skipif(platform.machine() != "x86_64", reason="runs the x86_64 layer's native code")
def test_layer_runs_gemm_potrf_and_tsqr_tiles_through_the_lambda_handler(layers, s3_store, tmp_path):
    """GEMM (numpy), a Cholesky diagonal tile (scipy's syrk + potrf) and a TSQR leaf (scipy's geqrf) run by
    the layer's own numpy 2.2.6 / scipy against a driver on a newer numpy and scipy."""
    rng = np.random.default_rng(3)
    a, b = rng.standard_normal((64, 96)), rng.standard_normal((96, 40))
    A, B = BigMatrix.from_numpy(a, (32, 48), s3_store), BigMatrix.from_numpy(b, (48, 40), s3_store)
    C = BigMatrix.create((64, 40), (32, 40), "float64", s3_store)
    gemm = Task("layer/C1_0", "gemm", (C, 1, 0), tuple(((A, 1, k), (B, k, 0)) for k in range(2)))
    # Cholesky: L[1, 1] from S[1, 1] and the panel L[1, 0] (given: scipy's factor of the whole matrix)
    x = rng.standard_normal((64, 64))
    s = x @ x.T + 64 * np.eye(64)
    full = scipy.linalg.cholesky(s, lower=True)
    S = BigMatrix.from_numpy(s, (32, 32), s3_store)
    L = BigMatrix.create((64, 64), (32, 32), "float64", s3_store)
    L.put_block(1, 0, full[32:, :32])
    potrf = Task("layer/L1_1", "potrf", (L, 1, 1), ((S, 1, 1), ((L, 1, 0),)), {"of": S.key},
                 flops=2 * 32 ** 3 / 3)
    # TSQR: the R factor of row block 1 of a tall matrix (a leaf of the reduction tree)
    t = rng.standard_normal((192, 24))
    T = BigMatrix.from_numpy(t, (96, 24), s3_store)
    R = BigMatrix.create((48, 24), (24, 24), "float64", s3_store)
    tsqr = Task("layer/tsqr-r0/1", "tsqr", (R, 1, 0), ((T, 1, 0),), {"form": "r", "leaf": True},
                flops=2 * 96 * 24 ** 2)
    ex = _Capture(s3_store)
    futures = ex.submit_tasks([task.spec("run-layer", 1, 60.0) for task in (gemm, potrf, tsqr)])
    out = _run_in_layer(layers["x86_64"], ex.events, tmp_path)
    assert [f.result(timeout=10)["flops"] for f in futures] == [gemm.flops, potrf.flops, tsqr.flops]  # or raises
    assert [s["ok"] for s in out["status"]] == [True] * 3
    assert out["scipy_linalg_file"].startswith(str(tmp_path / "opt" / "python"))  # the tiles' LAPACK: the layer's
    assert _rel(C.get_block(1, 0), (a @ b)[32:64]) < 1e-13
    l11 = L.get_block(1, 1)
    assert _rel(l11, full[32:, 32:]) < 1e-12 and np.array_equal(l11, np.tril(l11))
    r, want = R.get_block(1, 0), np.linalg.qr(t[96:], mode="r")
    assert np.array_equal(r, np.triu(r))
    assert _rel(np.abs(r), np.abs(want)) < 1e-12 and _rel(r.T @ r, t[96:].T @ t[96:]) < 1e-12


def test_with_sdk_puts_the_pinned_boto3_in_the_layer(wheel_dirs, tmp_path):
    try:
        zip_path, manifest = build.build_layer("x86_64", tmp_path, with_sdk=True, runtime="python3.11",
                                               blas="openblas")
    except RuntimeError as e:  # the SDK wheels are not cached and the registry is unreachable
        pytest.skip(f"cannot fetch the SDK wheels: {str(e)[-300:]}")
    sdk = build.pins(build.SDK_REQUIREMENTS)
    assert manifest["packages"] == {**build.pins(), **sdk} and manifest["not_included"] == {}
    assert manifest["unzipped_bytes"] < build.UNZIPPED_LIMIT
    with zipfile.ZipFile(zip_path) as zf:
        names = set(zf.namelist())
    assert {"python/boto3/__init__.py", "python/botocore/__init__.py", "python/numpy/__init__.py"} <= names


def test_a_layer_for_python313_is_built_from_its_own_wheels(tmp_path):
    """python3.12/3.13 layers are built here (pip resolves their wheels) but cannot be executed here:
    only python3.11 runs in the sandbox test above."""
    d = build.wheel_cache("x86_64", "python3.13")
    wanted = build.pins(build.requirements_for("python3.13"))
    try:
        build.find_wheels(d, "x86_64", wanted, "python3.13")
    except FileNotFoundError:
        try:
            build.download_wheels("x86_64", d, build.requirements_for("python3.13"), "python3.13")
        except RuntimeError as e:
            pytest.skip(f"the python3.13 wheels are not cached and the registry does not answer: {e}")
    zip_path, manifest = build.build_layer("x86_64", tmp_path, wheel_dir=d, runtime="python3.13", blas="openblas")
    assert zip_path.name == "numpywren-layer-python3.13-x86_64.zip"
    assert (manifest["runtime"], manifest["python_version"]) == ("python3.13", "3.13")
    assert all("cp313" in w or "py3-none" in w for w in manifest["wheels"])
    assert manifest["pyc"].startswith("none")  # compiled only for the Python that runs the build
    with zipfile.ZipFile(zip_path) as zf:
        assert not any(n.endswith(".pyc") for n in zf.namelist())
    with pytest.raises(FileNotFoundError, match="cp313"):  # 3.11 wheels do not make a 3.13 layer
        build.find_wheels(build.wheel_cache("x86_64"), "x86_64", wanted, "python3.13")
