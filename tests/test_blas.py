"""blocks.blas: the ctypes BLAS/LAPACK binding, against numpy/scipy, for every library we can load here.

Three back ends: numpy/scipy (the fallback), the OpenBLAS that scipy's wheel bundles (Fortran symbols
with a ``scipy_`` prefix: the binding is tested in CI without MKL), and the MKL library of
``layers/mkl_lib.py`` when the mkl-static wheel is cached (``python layers/mkl_lib.py`` downloads it;
skipped otherwise, with that reason).
"""
from __future__ import annotations

import glob
import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy
import scipy.linalg

from blocks import blas
from blocks.gemm import gemm_accumulate

ROOT = Path(__file__).resolve().parents[1]


def _load_mkl_lib_module():
    spec = importlib.util.spec_from_file_location("numpywren_mkl_lib", ROOT / "layers" / "mkl_lib.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


mkl_lib = _load_mkl_lib_module()


def _scipy_openblas() -> str | None:
    libs = sorted(glob.glob(str(Path(scipy.__file__).parent.parent / "scipy.libs" / "libscipy_openblas*.so")))
    return libs[0] if libs else None


@pytest.fixture(scope="session")
def mkl_path(tmp_path_factory) -> str:
    if not (mkl_lib.cache_dir() / mkl_lib.WHEEL).is_file():
        pytest.skip(f"the mkl-static wheel is not cached ({mkl_lib.cache_dir() / mkl_lib.WHEEL}); "
                    f"run python layers/mkl_lib.py to download it (~213 MB) and test the MKL library")
    if shutil.which("gcc") is None or shutil.which("objdump") is None:
        pytest.skip("gcc and objdump are needed to link the MKL library")
    path, _ = mkl_lib.build(tmp_path_factory.mktemp("mkl"), download=False)
    return str(path)


def _fake_mkl_wheel(site: Path, library: str) -> Path:
    """A site folder where an installed ``mkl`` distribution's RECORD lists ``../../lib/libmkl_rt.so.3`` (a copy
    of ``library``), laid out as pip installs the wheel's data files under a prefix."""
    info = site / "mkl-2099.0.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: mkl\nVersion: 2099.0.0\n")
    (info / "RECORD").write_text("../../lib/libmkl_rt.so.3,,\nmkl-2099.0.0.dist-info/METADATA,,\n")
    lib = site.parent.parent / "lib" / "libmkl_rt.so.3"
    lib.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(library, lib)
    return lib


def test_an_installed_mkl_wheel_is_the_default_library(tmp_path):
    """``pip install numpywren[mkl]``: blocks.blas finds the wheel's libmkl_rt with no setting (a stand-in library
    here: scipy's OpenBLAS under that name), and ``$NUMPYWREN_BLAS_LIB=numpy`` still opts out."""
    openblas = _scipy_openblas()
    if openblas is None:
        pytest.skip("this scipy wheel bundles no libscipy_openblas*.so")
    site = tmp_path / "prefix" / "lib" / "site-packages"
    lib = _fake_mkl_wheel(site, openblas)
    probe = ("from blocks import blas; import numpy as np; a = np.arange(12.).reshape(3, 4); "
             "l = blas.library(); print(l.path if l else None); print(float(abs(blas.gemm(a, a.T) - a @ a.T).max()))")
    env = {k: v for k, v in os.environ.items() if k != blas.ENV}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(site)])
    out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True,
                         cwd=tmp_path).stdout.split()
    assert out == [str(lib.resolve()), "0.0"]
    env[blas.ENV] = "numpy"
    out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True,
                         cwd=tmp_path).stdout.split()
    assert out[0] == "None"


def test_the_mkl_wheel_runs_the_kernels_sequentially():
    """The real ``mkl`` wheel, where it is installed: found by default, MKL, one thread, right answers."""
    path = blas._mkl_wheel_library()
    if path is None:
        pytest.skip("the mkl wheel is not installed (pip install numpywren[mkl])")
    probe = ("import os; from blocks import blas; import numpy as np; import ctypes; l = blas.library(); "
             "a = np.random.default_rng(0).standard_normal((300, 200)); "
             "print(l.is_mkl, l._lib.MKL_Get_Max_Threads(), float(abs(blas.gemm(a, a.T) - a @ a.T).max() < 1e-12), "
             "'libmkl_rt' in blas.describe())")
    env = {k: v for k, v in os.environ.items() if k != blas.ENV}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *sys.path[1:]])
    out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True).stdout
    assert out.split() == ["True", "1", "1.0", "True"]


def _fake_mkl_rt(tmp_path: Path, interface_layer: int, threading_layer: int) -> Path:
    """A library exporting the kernels' Fortran symbols (never called here) and libmkl_rt's run-time layer
    switches, which answer ``interface_layer``/``threading_layer`` whatever is asked (as libmkl_rt does once
    another layer is in use, or when ``$MKL_INTERFACE_LAYER`` says ILP64) and record what was asked."""
    symbols = [f"{p}{r}_" for r in blas.ROUTINES for p in "ds"] + ["mkl_get_version_string"]
    source = "".join(f"void {s}(void) {{}}\n" for s in symbols) + (
        "int asked_interface = -1, asked_threading = -1;\n"
        f"int MKL_Set_Interface_Layer(int x) {{ asked_interface = x; return {interface_layer}; }}\n"
        f"int MKL_Set_Threading_Layer(int x) {{ asked_threading = x; return {threading_layer}; }}\n")
    (tmp_path / "fake.c").write_text(source)
    lib = tmp_path / f"libmkl_rt_fake_{interface_layer}_{threading_layer}.so"
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(lib), str(tmp_path / "fake.c")], check=True)
    return lib


@pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc builds the stand-in libmkl_rt")
def test_libmkl_rt_must_run_lp64_and_sequential_or_it_is_refused(tmp_path):
    """The kernels pass 32-bit integers and expect one core: libmkl_rt is asked for LP64 and its sequential layer,
    and one that answers otherwise ($MKL_INTERFACE_LAYER=ILP64, a layer chosen before) is refused, not used."""
    import ctypes

    good = blas.Library(_fake_mkl_rt(tmp_path, 0, blas.MKL_THREADING_SEQUENTIAL))
    assert ctypes.c_int.in_dll(good._lib, "asked_interface").value == blas.MKL_INTERFACE_LP64
    assert ctypes.c_int.in_dll(good._lib, "asked_threading").value == blas.MKL_THREADING_SEQUENTIAL
    with pytest.raises(blas.BlasLibraryError, match="ILP64"):
        blas.Library(_fake_mkl_rt(tmp_path, 1, blas.MKL_THREADING_SEQUENTIAL))
    with pytest.raises(blas.BlasLibraryError, match="sequential"):
        blas.Library(_fake_mkl_rt(tmp_path, 0, 0))


@pytest.fixture(params=["numpy", "scipy-openblas", "mkl"])
def lib(request):
    if request.param == "numpy":
        return None
    if request.param == "scipy-openblas":
        path = _scipy_openblas()
        if path is None:
            pytest.skip("this scipy wheel bundles no libscipy_openblas*.so")
        return blas.Library(path)
    return blas.Library(request.getfixturevalue("mkl_path"))


DTYPES = [(np.float64, 1e-12), (np.float32, 1e-4)]
ORDERS = ["C", "F"]


def _rand(shape, dtype, order, seed=0):
    return np.asarray(np.random.default_rng(seed).standard_normal(shape), dtype=dtype, order=order)


def _rel(got, want):
    return np.linalg.norm(np.asarray(got, np.float64) - want) / np.linalg.norm(want)


def _spd(n, dtype, order):
    x = _rand((n, n), np.float64, "C", seed=3)
    return np.asarray(x @ x.T + n * np.eye(n), dtype=dtype, order=order)


@pytest.mark.parametrize("dtype,tol", DTYPES)
@pytest.mark.parametrize("oa", ORDERS)
@pytest.mark.parametrize("ob", ORDERS)
@pytest.mark.parametrize("oc", ORDERS)
def test_gemm_all_orders(lib, dtype, tol, oa, ob, oc):
    a, b = _rand((37, 23), dtype, oa, 1), _rand((23, 41), dtype, ob, 2)
    c0 = _rand((37, 41), dtype, oc, 3)
    c = c0.copy(order=oc)
    out = blas.gemm(a, b, c, alpha=0.5, beta=2.0, lib=lib)
    assert out is c and c.flags[f"{oc}_CONTIGUOUS"]  # in place, no copy of the output
    want = 0.5 * (a.astype(np.float64) @ b.astype(np.float64)) + 2.0 * c0.astype(np.float64)
    assert _rel(c, want) < tol


@pytest.mark.parametrize("dtype,tol", DTYPES)
def test_gemm_transposed_views_and_strided(lib, dtype, tol):
    a, b = _rand((30, 20), dtype, "C", 1), _rand((40, 30), dtype, "C", 2)
    want = a.T.astype(np.float64) @ b.T.astype(np.float64)
    assert _rel(blas.gemm(a.T, b.T, lib=lib), want) < tol
    big = _rand((60, 40), dtype, "C", 4)  # a slice with a leading dimension larger than its width
    view = big[5:35, 3:23]
    assert _rel(blas.gemm(view.T, view, lib=lib), view.T.astype(np.float64) @ view.astype(np.float64)) < tol
    every_other = big[::2, ::2]  # not BLAS-compatible strides: copied, still right
    assert _rel(blas.gemm(every_other, every_other.T, lib=lib),
                every_other.astype(np.float64) @ every_other.T.astype(np.float64)) < tol


@pytest.mark.parametrize("dtype,tol", DTYPES)
@pytest.mark.parametrize("oa", ORDERS)
@pytest.mark.parametrize("oc", ORDERS)
@pytest.mark.parametrize("lower", [True, False])
def test_syrk(lib, dtype, tol, oa, oc, lower):
    a = _rand((29, 17), dtype, oa, 5)
    c = np.zeros((29, 29), dtype, order=oc)
    blas.syrk(a, c, lower=lower, lib=lib)
    full = a.astype(np.float64) @ a.T.astype(np.float64)
    tri = np.tril if lower else np.triu
    assert _rel(tri(c), tri(full)) < tol
    other = np.triu(c, 1) if lower else np.tril(c, -1)
    assert not other.any()  # the other triangle is left alone


@pytest.mark.parametrize("dtype,tol", DTYPES)
@pytest.mark.parametrize("oa", ORDERS)
@pytest.mark.parametrize("ob", ORDERS)
@pytest.mark.parametrize("left", [True, False])
@pytest.mark.parametrize("lower", [True, False])
@pytest.mark.parametrize("trans", [False, True])
def test_trsm(lib, dtype, tol, oa, ob, left, lower, trans):
    n = 19
    t = np.tril(_rand((n, n), np.float64, "C", 6)) + n * np.eye(n)
    t = t if lower else t.T
    a = np.asarray(t + (np.triu(np.ones((n, n)), 1) if lower else np.tril(np.ones((n, n)), -1)) * 1e3,
                   dtype=dtype, order=oa)  # garbage in the other triangle: must not be read
    b0 = _rand((n, 13) if left else (13, n), dtype, ob, 7)
    b = b0.copy(order=ob)
    blas.trsm(a, b, left=left, lower=lower, trans=trans, alpha=2.0, lib=lib)
    op = t.T if trans else t
    x = b.astype(np.float64)
    assert _rel(op @ x if left else x @ op, 2.0 * b0.astype(np.float64)) < tol * 10


@pytest.mark.parametrize("dtype,tol", DTYPES)
@pytest.mark.parametrize("oa", ORDERS)
@pytest.mark.parametrize("ob", ORDERS)
@pytest.mark.parametrize("left", [True, False])
@pytest.mark.parametrize("lower", [True, False])
@pytest.mark.parametrize("trans", [False, True])
def test_trmm_by_the_trtri_inverse_solves_as_trsm(dtype, tol, oa, ob, left, lower, trans):
    n = 19
    t = np.tril(_rand((n, n), np.float64, "C", 6)) + n * np.eye(n)
    t = t if lower else t.T
    a = np.asarray(t + (np.triu(np.ones((n, n)), 1) if lower else np.tril(np.ones((n, n)), -1)) * 1e3,
                   dtype=dtype, order=oa)  # garbage in the other triangle: neither routine may read it
    inv = blas.trtri(a, lower=lower)
    assert inv.flags.f_contiguous
    assert _rel(inv.astype(np.float64) @ t, np.eye(n)) < tol * 10
    assert not (np.triu(inv, 1) if lower else np.tril(inv, -1)).any()
    b0 = _rand((n, 13) if left else (13, n), dtype, ob, 7)
    b = b0.copy(order=ob)
    blas.trmm(inv, b, left=left, lower=lower, trans=trans, alpha=2.0)   # = trsm(a, b0, ...)
    op = t.T if trans else t
    x = b.astype(np.float64)
    assert _rel(op @ x if left else x @ op, 2.0 * b0.astype(np.float64)) < tol * 10


def test_trtri_of_a_singular_triangle_raises():
    t = np.tril(np.ones((4, 4)))
    t[2, 2] = 0
    with pytest.raises(blas.LapackError, match="singular"):
        blas.trtri(t)


@pytest.mark.parametrize("order", ORDERS)
def test_trsm_unit_diagonal(lib, order):
    n = 11
    t = np.tril(_rand((n, n), np.float64, "C", 9), -1) * 0.1 + np.eye(n)
    a = np.asarray(t + 5 * np.eye(n), order=order)  # the stored diagonal must be ignored
    b0 = _rand((n, 4), np.float64, order, 10)
    x = blas.trsm(a, b0.copy(order=order), lower=True, unit_diagonal=True, lib=lib)
    assert _rel(t @ x, b0) < 1e-12


@pytest.mark.parametrize("dtype,tol", DTYPES)
@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("lower", [True, False])
def test_potrf(lib, dtype, tol, order, lower):
    spd = _spd(33, dtype, order)
    a = spd.copy(order=order)
    blas.potrf(a, lower=lower, lib=lib)
    f = np.tril(a) if lower else np.triu(a)
    rebuilt = f.astype(np.float64) @ f.T.astype(np.float64) if lower else f.T.astype(np.float64) @ f.astype(np.float64)
    assert _rel(rebuilt, spd.astype(np.float64)) < tol * 10
    want = scipy.linalg.cholesky(spd.astype(np.float64), lower=lower)
    assert _rel(f, want) < tol * 10


def test_potrf_not_positive_definite(lib):
    a = -np.eye(4)
    with pytest.raises(blas.LapackError, match="not positive definite"):
        blas.potrf(a, lib=lib)


@pytest.mark.parametrize("dtype,tol", DTYPES)
@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("shape", [(40, 24), (24, 24)])
def test_getrf(lib, dtype, tol, order, shape):
    a = _rand(shape, dtype, order, 9)
    lu, ipiv, info = blas.getrf(a.copy(order=order), lib=lib)
    want, want_piv, want_info = scipy.linalg.lapack.get_lapack_funcs("getrf", dtype=dtype)(a)
    assert info == want_info == 0 and np.array_equal(ipiv, want_piv)   # the same pivots, 0-based
    assert _rel(lu, want.astype(np.float64)) < tol * 10
    singular = a.copy(order=order)
    singular[:, 5] = 0
    assert blas.getrf(singular, lib=lib)[2] == 6                        # info: U[5, 5] is exactly zero


@pytest.mark.parametrize("dtype,tol", DTYPES)
@pytest.mark.parametrize("order", ORDERS)
def test_geqrf_orgqr(lib, dtype, tol, order):
    a = _rand((40, 24), dtype, order, 8)
    qr, tau = blas.geqrf(a.copy(order=order), lib=lib)
    r = np.triu(qr[:24])
    q = blas.orgqr(qr, tau, lib=lib)
    assert q.shape == (40, 24)
    assert _rel(q.astype(np.float64) @ r.astype(np.float64), a.astype(np.float64)) < tol * 10
    assert np.abs(q.T.astype(np.float64) @ q - np.eye(24)).max() < tol * 100
    want_r = np.linalg.qr(a.astype(np.float64), mode="r")
    assert _rel(np.abs(r), np.abs(want_r)) < tol * 10  # R is unique up to the signs of its rows


@pytest.mark.parametrize("dtype,tol", DTYPES)
def test_gemm_accumulate_uses_library(lib, dtype, tol, monkeypatch):
    monkeypatch.setattr(blas, "library", lambda: lib)
    pairs = [(_rand((20, 10), dtype, "C", s), _rand((10, 15), dtype, "F", s + 1)) for s in range(3)]
    pairs.append((pairs[0][0][:, :10].T.copy().T, pairs[0][1]))  # a Fortran-ordered tile too
    got = gemm_accumulate(iter(pairs), dtype=dtype)
    want = sum(a.astype(np.float64) @ b.astype(np.float64) for a, b in pairs)
    assert got.dtype == dtype and _rel(got, want) < tol


# -- complex (z/c routines; numpy/scipy's when a library lacks them) ----------------------------------------------
CDTYPES = [(np.complex128, 1e-12), (np.complex64, 1e-4)]


def _crand(shape, dtype, order, seed=0):
    rng = np.random.default_rng(seed)
    return np.asarray(rng.standard_normal(shape) + 1j * rng.standard_normal(shape), dtype=dtype, order=order)


def _crel(got, want):
    want = np.asarray(want, np.complex128)
    return np.linalg.norm(np.asarray(got, np.complex128) - want) / np.linalg.norm(want)


def test_libraries_export_the_complex_routines(lib):
    if lib is not None:
        assert all(lib.has(np.dtype(d), r) for r in blas.COMPLEX_ROUTINES for d in (np.complex64, np.complex128))


@pytest.mark.parametrize("dtype,tol", CDTYPES)
@pytest.mark.parametrize("oa", ORDERS)
@pytest.mark.parametrize("ob", ORDERS)
@pytest.mark.parametrize("oc", ORDERS)
def test_complex_gemm_all_orders(lib, dtype, tol, oa, ob, oc):
    a, b, c0 = _crand((17, 11), dtype, oa, 1), _crand((11, 13), dtype, ob, 2), _crand((17, 13), dtype, oc, 3)
    c = c0.copy(order=oc)
    out = blas.gemm(a, b, c, alpha=0.5 - 1j, beta=2.0 + 0.5j, lib=lib)
    assert out is c
    want = (0.5 - 1j) * (a.astype(np.complex128) @ b) + (2.0 + 0.5j) * c0.astype(np.complex128)
    assert _crel(c, want) < tol


@pytest.mark.parametrize("dtype,tol", CDTYPES)
@pytest.mark.parametrize("oa", ORDERS)
@pytest.mark.parametrize("oc", ORDERS)
@pytest.mark.parametrize("lower", [True, False])
def test_herk(lib, dtype, tol, oa, oc, lower):
    a = _crand((21, 9), dtype, oa, 5)
    c0 = _crand((21, 21), dtype, oc, 6)
    c = c0.copy(order=oc)
    blas.herk(a, c, lower=lower, alpha=-1.0, beta=1.0, lib=lib)
    full = c0.astype(np.complex128) - a.astype(np.complex128) @ a.conj().T
    tri, other = (np.tril, lambda x: np.triu(x, 1)) if lower else (np.triu, lambda x: np.tril(x, -1))
    off = ~np.eye(21, dtype=bool)   # HERK zeroes the imaginary parts of the diagonal (Hermitian), as LAPACK
    assert _crel(tri(c)[off], tri(full)[off]) < tol and _crel(np.diagonal(c), np.diagonal(full).real) < tol
    assert np.array_equal(other(c), other(c0))   # the other triangle is left alone


@pytest.mark.parametrize("dtype,tol", CDTYPES)
@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("left", [True, False])
@pytest.mark.parametrize("trans", [False, True])
def test_complex_trsm_and_potrf(lib, dtype, tol, order, left, trans):
    n = 15
    t = np.asarray(np.tril(_crand((n, n), np.complex128, "C", 7)) + n * np.eye(n), dtype=dtype, order=order)
    b0 = _crand((n, 6) if left else (6, n), dtype, order, 8)
    b = blas.trsm(t, b0.copy(order=order), left=left, lower=True, trans=trans, lib=lib)
    op = (t.T if trans else t).astype(np.complex128)   # a transpose, never conjugated (the caller conjugates)
    assert _crel(op @ b if left else b @ op, b0) < tol * 10
    x = _crand((n, n), np.complex128, "C", 9)
    hpd = np.asarray(x @ x.conj().T + n * np.eye(n), dtype=dtype, order=order)
    f = blas.potrf(hpd.copy(order=order), lower=left, lib=lib)
    f = np.tril(f) if left else np.triu(f)
    want = scipy.linalg.cholesky(hpd.astype(np.complex128), lower=left)
    assert _crel(f, want) < tol * 10


@pytest.mark.parametrize("dtype,tol", CDTYPES)
def test_complex_getrf_geqrf_ungqr(lib, dtype, tol):
    a = _crand((30, 18), dtype, "F", 10)
    lu, ipiv, info = blas.getrf(a.copy(order="F"), lib=lib)
    want, want_piv, _ = scipy.linalg.lapack.get_lapack_funcs("getrf", dtype=dtype)(a)
    assert info == 0 and np.array_equal(ipiv, want_piv) and _crel(lu, want) < tol * 10
    qr, tau = blas.geqrf(a.copy(order="F"), lib=lib)
    r = np.triu(qr[:18])
    q = blas.orgqr(qr, tau, lib=lib)   # ungqr for complex (in place: qr is overwritten)
    assert _crel(q @ r, a) < tol * 10
    assert np.abs(q.conj().T @ q - np.eye(18)).max() < tol * 100


@pytest.mark.parametrize("dtype,tol", CDTYPES)
def test_complex_gemm_accumulate(lib, dtype, tol, monkeypatch):
    monkeypatch.setattr(blas, "library", lambda: lib)
    pairs = [(_crand((12, 7), dtype, "C", s), _crand((7, 9), dtype, "F", s + 1)) for s in range(3)]
    got = gemm_accumulate(iter(pairs), dtype=dtype)
    assert got.dtype == dtype and _crel(got, sum(a.astype(np.complex128) @ b for a, b in pairs)) < tol


def test_library_selection(monkeypatch, tmp_path):
    monkeypatch.setenv(blas.ENV, "numpy")
    assert blas.library() is None and blas.describe().startswith("numpy ")
    monkeypatch.setenv(blas.ENV, str(tmp_path / "missing.so"))
    with pytest.raises(blas.BlasLibraryError, match="missing.so"):
        blas.library()
    not_blas = tmp_path / "libnotblas.so"
    not_blas.write_bytes(b"not an ELF file")
    monkeypatch.setenv(blas.ENV, str(not_blas))
    with pytest.raises(blas.BlasLibraryError, match="cannot load"):
        blas.library()
    path = _scipy_openblas()
    if path:
        monkeypatch.setenv(blas.ENV, path)
        assert blas.library().path == path and "libscipy_openblas" in blas.describe()


def test_mkl_library_reports_its_version(mkl_path, monkeypatch):
    monkeypatch.setenv(blas.ENV, mkl_path)
    assert f"Intel(R) oneAPI Math Kernel Library Version {mkl_lib.MKL_VERSION}" in blas.describe()


def test_mkl_build_is_reproducible_and_loads_on_the_runtime(mkl_path, tmp_path):
    again, info = mkl_lib.build(tmp_path, download=False)
    assert mkl_lib.sha256(again) == mkl_lib.sha256(Path(mkl_path)) == info["sha256"]
    assert info["bytes"] < 40e6
    # every referenced glibc version is at most the default runtime's (Amazon Linux 2023: python3.13) ...
    assert max(mkl_lib.glibc_versions(again).values()) <= mkl_lib.RUNTIME_GLIBC[mkl_lib.DEFAULT_RUNTIME]
    # ... and a build for Amazon Linux 2 (python3.11) still binds to its older glibc through the trampolines
    old_os, _ = mkl_lib.build(tmp_path / "al2", "python3.11", download=False)
    assert max(mkl_lib.glibc_versions(old_os).values()) <= mkl_lib.RUNTIME_GLIBC["python3.11"]
    exported = set(os.popen(f"nm -D --defined-only {again}").read().split())
    assert set(info["routines"]) <= exported and "cblas_dgemm" not in exported


def test_mkl_build_refuses_a_runtime_whose_glibc_is_too_old(mkl_path, tmp_path, monkeypatch):
    monkeypatch.setitem(mkl_lib.RUNTIME_GLIBC, "python-ancient", (2, 1))
    with pytest.raises(mkl_lib.GlibcTooNewError, match="newer than glibc 2.1 of the python-ancient runtime"):
        mkl_lib.build(tmp_path, "python-ancient", download=False)
    assert not (tmp_path / mkl_lib.LIB_NAME).exists()


@pytest.mark.parametrize("choice", ["numpy", "scipy-openblas", "mkl"])
def test_job_report_names_the_tile_kernels_blas(choice, local_store, monkeypatch, request):
    """A GEMM job through local worker processes: right result, and the report says which BLAS ran it."""
    import numpywren
    from numpywren.matrix import BigMatrix

    path = {"numpy": "numpy", "scipy-openblas": _scipy_openblas()}.get(choice)
    if choice == "mkl":
        path = request.getfixturevalue("mkl_path")
    if path is None:
        pytest.skip("this scipy wheel bundles no libscipy_openblas*.so")
    monkeypatch.setenv(blas.ENV, path)  # before the workers start: they inherit it
    a, b = _rand((48, 40), np.float64, "C", 1), _rand((40, 32), np.float64, "C", 2)
    A = BigMatrix.from_numpy(a, 16, local_store, "A")
    B = BigMatrix.from_numpy(b, 16, local_store, "B")
    ex = numpywren.LocalExecutor(workers=2, store=local_store)
    try:
        C = numpywren.matmul(A, B, out="C", executor=ex, progress=False)
    finally:
        ex.cleanup()
    assert _rel(C.to_numpy(), a @ b) < 1e-12
    assert C.report.blas == [blas.describe()]
    want = {"numpy": "numpy ", "scipy-openblas": "libscipy_openblas", "mkl": "Math Kernel Library"}[choice]
    assert want in C.report.blas[0]
