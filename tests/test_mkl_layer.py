"""The MKL layer (``layers/build.py --blas mkl``): manifest, size, reproducibility, and the layer's own
numpy + numpywren running a GEMM tile through the Lambda handler on the layer's MKL library.

Needs the cached mkl-static wheel (``python layers/mkl_lib.py`` downloads it, ~213 MB) and the
cached layer wheels; skipped with that reason otherwise."""
from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from numpywren import BigMatrix
from numpywren.dag import Task
from numpywren.deploy import load_layer_builder
from numpywren.executors.base import Executor

build = load_layer_builder()
mkl_lib = build._mkl_lib()
pytestmark = pytest.mark.skipif(platform.machine() != "x86_64", reason="MKL is x86_64 only")


@pytest.fixture(scope="module")
def mkl_layer(tmp_path_factory):
    if not (mkl_lib.cache_dir() / mkl_lib.WHEEL).is_file():
        pytest.skip(f"the mkl-static wheel is not cached in {mkl_lib.cache_dir()}; python layers/mkl_lib.py "
                    f"downloads it (~213 MB)")
    wheels = build.wheel_cache("x86_64")
    try:
        build.find_wheels(wheels, "x86_64", build.pins())
    except FileNotFoundError as e:
        pytest.skip(f"the layer's wheels are not cached: {e}")
    return build.build_layer("x86_64", tmp_path_factory.mktemp("mkl"), wheel_dir=wheels, blas="mkl",
                             runtime="python3.11")


def test_mkl_layer_manifest_size_and_library(mkl_layer):
    zip_path, m = mkl_layer
    assert zip_path.name == "numpywren-layer-x86_64-mkl.zip"
    assert m["mkl"]["mkl_version"] == mkl_lib.MKL_VERSION and m["mkl"]["threading"] == "sequential"
    routines = ("gemm", "syrk", "trsm", "potrf", "getrf", "geqrf", "orgqr")
    complex_routines = ("gemm", "herk", "trsm", "potrf", "getrf", "geqrf", "ungqr")
    assert set(m["mkl"]["routines"]) == ({p + r + "_" for r in routines for p in "ds"}
                                         | {p + r + "_" for r in complex_routines for p in "zc"})
    assert m["mkl"]["glibc_max"] == "GLIBC_2.14" and m["mkl"]["runtime_glibc"] == "2.26"  # python3.11: AL2
    assert "MKL" in m["tile_kernels_blas"] and m["unzipped_bytes"] < build.UNZIPPED_LIMIT
    with zipfile.ZipFile(zip_path) as zf:
        info = zf.getinfo("lib/libnumpywren_mkl.so")
        data = zf.read(info)
        assert hashlib.sha256(data).hexdigest() == m["mkl"]["sha256"] and data[:4] == b"\x7fELF"
        assert (info.external_attr >> 16) & 0o111
        assert json.loads(zf.read("python/numpywren_layer.json"))["mkl"] == m["mkl"]
        assert sum(i.file_size for i in zf.infolist()) == m["unzipped_bytes"]


def test_mkl_layer_is_reproducible(mkl_layer, tmp_path):
    zip_path, m = mkl_layer
    again, m2 = build.build_layer("x86_64", tmp_path, wheel_dir=build.wheel_cache("x86_64"), blas="mkl",
                                  runtime="python3.11")
    assert hashlib.sha256(again.read_bytes()).hexdigest() == hashlib.sha256(zip_path.read_bytes()).hexdigest() \
        == m["sha256"] == m2["sha256"]


def test_mkl_refused_for_arm64(tmp_path):
    with pytest.raises(ValueError, match="--blas mkl needs --arch x86_64"):
        build.build_layer("arm64", tmp_path, blas="mkl")


class _Capture(Executor):
    workers = 1

    def __init__(self, store):
        super().__init__(store)
        self.events = []

    def _invoke(self, event):
        self.events.append(event)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_mkl_layer_runs_a_gemm_tile_through_the_lambda_handler(mkl_layer, s3_store, tmp_path, dtype):
    zip_path, _ = mkl_layer
    with zipfile.ZipFile(zip_path) as zf:
        zf.extractall(tmp_path / "opt")
    rng = np.random.default_rng(3)
    a, b = rng.standard_normal((64, 96)).astype(dtype), rng.standard_normal((96, 40)).astype(dtype)
    A, B = BigMatrix.from_numpy(a, (32, 48), s3_store), BigMatrix.from_numpy(b, (48, 40), s3_store)
    C = BigMatrix.create((64, 40), (32, 40), dtype, s3_store)
    task = Task("layer/C1_0", "gemm", (C, 1, 0), tuple(((A.T.T, 1, k), (B, k, 0)) for k in range(2)))
    ex = _Capture(s3_store)
    future = ex.submit_tasks([task.spec("run-mkl", 1, 60.0)])[0]
    script = (
        "import json, sys, blocks.blas\n"
        "from numpywren.worker.lambda_handler import handler\n"
        "class Ctx:\n"
        "    def get_remaining_time_in_millis(self): return 60000\n"
        "status = handler(json.loads(sys.argv[1]), Ctx())\n"
        "print(json.dumps({'lib': blocks.blas.library().path, 'status': status}))\n")
    env = {k: v for k, v in os.environ.items() if k != "NUMPYWREN_BLAS_LIB"}
    env.update(PYTHONPATH=str(tmp_path / "opt" / "python"), OPENBLAS_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-s", "-c", script, json.dumps(ex.events[0])], env=env,
                          capture_output=True, text=True, timeout=120, cwd=tmp_path, check=False)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["lib"] == str(tmp_path / "opt" / "lib" / "libnumpywren_mkl.so")  # found beside python/
    assert out["status"]["ok"] is True
    stats = future.result(timeout=10)
    assert "Math Kernel Library" in stats["blas"] and stats["flops"] == task.flops
    got, want = C.get_block(1, 0), (a.astype(np.float64) @ b)[32:64]
    assert np.linalg.norm(got - want) / np.linalg.norm(want) < (1e-13 if dtype == "float64" else 1e-5)
