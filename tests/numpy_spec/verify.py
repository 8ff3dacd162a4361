"""Independent checks of every answer numpywren returns to the adapter: backward errors, orthogonality,
reconstruction, never "equals what numpywren said before".

``check`` returns True, or a sentence saying what is wrong. Inputs with NaN
or inf, or of size 0, are left to the test's own assertions (there is no
backward error to measure). Tolerances are generous (a wrong answer is off
by far more): ``TOL * n * eps`` of the result's precision. Complex answers are
checked as real ones, with conjugate transposes where the math has them
(Hermitian matrices, unitary factors, ``trans="C"``).
"""
from __future__ import annotations

import numpy as np

TOL = 100.0


class WrongAnswer(AssertionError):
    """numpywren returned an answer that fails an independent check."""


def check(source: str, name: str, inputs: dict, arguments: dict, answer) -> "bool | str":
    arrays = [v[0] if isinstance(v, tuple) else v for v in inputs.values()]
    if any(x.size == 0 or x.dtype.kind not in "fciub" or not np.all(np.isfinite(x)) for x in arrays):
        return True
    try:
        return CHECKS[name](inputs, arguments, answer, source)
    except KeyError:
        return True
    except (ValueError, TypeError, IndexError, AttributeError) as e:   # a result of the wrong shape or kind
        return f"the result could not be checked ({type(e).__name__}: {e})"


def _f(x) -> np.ndarray:
    x = np.asarray(x)
    return x.astype(np.float64) if x.dtype.kind in "biu" else x


def _tol(n: int, *arrays) -> float:
    eps = max((np.finfo(a.dtype).eps for a in map(np.asarray, arrays) if a.dtype.kind in "fc"),
              default=np.finfo(np.float64).eps)
    return TOL * max(n, 1) * float(eps)


def _norm(x) -> float:
    x = np.asarray(x)
    return float(np.linalg.norm(x.astype(np.complex128 if x.dtype.kind == "c" else np.float64)))


def _h(x) -> np.ndarray:
    """The conjugate transpose (the transpose of a real array)."""
    return np.asarray(x).conj().T


def _wide(x) -> np.ndarray:
    """x in double precision (complex128 for complex x), for the checks' own arithmetic."""
    x = np.asarray(x)
    return x.astype(np.complex128 if x.dtype.kind == "c" else np.float64)


def _bound(what: str, error: float, limit: float) -> "bool | str":
    return True if error <= limit else f"{what} {error:.3g} exceeds {limit:.3g}"


def _sym(a, lower: bool, hermitian: bool = False) -> np.ndarray:
    """The symmetric (``hermitian``: Hermitian, real diagonal) matrix a function that reads only one triangle
    of ``a`` sees."""
    t = np.tril(a) if lower else np.triu(a)
    if hermitian:
        return t + _h(t) - np.diag(np.diag(a).real)
    return t + t.T - np.diag(np.diag(a))


def _residual(a, x, b, what: str = "backward error ||Ax-b||/(||A|| ||x|| + ||b||)") -> "bool | str":
    x = np.asarray(x)
    if x.shape != np.shape(b):
        return f"x has shape {x.shape}, b {np.shape(b)}"
    r = _wide(_f(a)) @ _wide(x) - b
    return _bound(what, _norm(r) / (_norm(a) * _norm(x) + _norm(b) or 1.0), _tol(a.shape[0], x))


def _solve(inputs, args, x, source):
    a, b = _f(inputs["a"]), _f(inputs["b"])
    if args.get("transposed"):
        a = a.T
    if args.get("assume_a") in ("sym", "symmetric", "her", "hermitian", "pos", "positive definite"):
        a = _sym(a, bool(args.get("lower", False)), args.get("assume_a") not in ("sym", "symmetric"))
    return _residual(a, x, b)


def _inv(inputs, args, x, source):
    a = _f(inputs["a"])
    n = a.shape[0]
    return _bound("||AX - I||/(||A|| ||X||)", _norm(a @ x - np.eye(n)) / (_norm(a) * _norm(x) or 1.0), _tol(n, x))


def _hadamard(a) -> float:
    return float(np.prod(np.linalg.norm(a, axis=0)))


def _det(inputs, args, d, source):
    a = _f(inputs["a"])
    ref = np.linalg.det(_wide(a))
    return _bound("|det - numpy's det|", abs(complex(d) - ref), _tol(a.shape[0], a) * _hadamard(a))


def _slogdet(inputs, args, result, source):
    a = _f(inputs["a"])
    sign, logabs = result
    value = complex(sign) * np.exp(float(logabs)) if np.isfinite(logabs) else 0.0
    scale = _hadamard(a)
    if 0 < scale < 1e300 and np.isfinite(value):
        return _bound("|sign exp(logabsdet) - numpy's det|", abs(value - np.linalg.det(_wide(a))),
                      _tol(a.shape[0], a) * scale)
    ref_sign, ref_log = np.linalg.slogdet(_wide(a))
    if abs(complex(sign) - ref_sign) > _tol(a.shape[0], a):
        return f"sign {sign} but numpy's is {ref_sign}"
    if float(logabs) == ref_log:   # equal, infinities included (a singular matrix: -inf on both sides)
        return _bound("|logabsdet - numpy's|", 0.0, 0.0)
    return _bound("|logabsdet - numpy's|", abs(float(logabs) - ref_log), _tol(a.shape[0], a) * max(1, abs(ref_log)))


def _cholesky(inputs, args, c, source):
    a = _f(inputs["a"])
    lower = (not args.get("upper", False)) if source == "numpy" else bool(args.get("lower", False))
    c = np.asarray(c)
    if source == "scipy" and "cho" not in args.get("_name", ""):
        other = np.triu(c, 1) if lower else np.tril(c, -1)
        if np.any(other != 0):
            return "the other triangle of the factor is not zero"
    t = np.tril(c) if lower else np.triu(c)
    rebuilt = t @ _h(t) if lower else _h(t) @ t
    return _bound("||LL^H - A||/||A||", _norm(rebuilt - _sym(a, lower, True)) / (_norm(a) or 1.0),
                  _tol(a.shape[0], c))


def _cho_factor(inputs, args, result, source):
    c, lower = result
    return _cholesky(inputs, {**args, "lower": lower, "_name": "cho"}, c, source)


def _cho_solve(inputs, args, x, source):
    c, lower = inputs["c_and_lower"]
    t = np.tril(_f(c)) if lower else np.triu(_f(c))
    return _residual(t @ _h(t) if lower else _h(t) @ t, x, _f(inputs["b"]))


def _solve_triangular(inputs, args, x, source):
    a = _f(inputs["a"])
    t = np.tril(a) if args.get("lower", False) else np.triu(a)
    if args.get("unit_diagonal"):
        np.fill_diagonal(t, 1.0)
    if args.get("trans", 0) in (1, "T"):
        t = t.T
    elif args.get("trans", 0) in (2, "C"):
        t = _h(t)
    return _residual(t, x, _f(inputs["b"]))


def _orthonormal(q, what: str) -> "bool | str":
    q = np.asarray(q)
    return _bound(f"||{what}^H {what} - I||", _norm(_h(q) @ q - np.eye(q.shape[1])), _tol(max(q.shape), q))


def _qr(inputs, args, result, source):
    a = _f(inputs["a"])
    mode = args.get("mode", "reduced")
    if mode == "raw":
        return True   # Householder vectors and tau: as LAPACK's own representation, checked by the test
    if mode == "r":
        r = result[0] if source == "scipy" else result
        return _gram(a, np.asarray(r))
    q, r = result[0], result[1]
    if args.get("pivoting"):
        a = a[:, result[2]]
    if np.any(np.tril(r, -1) != 0):
        return "R is not upper triangular"
    return _orthonormal(q, "Q") if _orthonormal(q, "Q") is not True else _bound(
        "||QR - A||/||A||", _norm(q @ r - a) / (_norm(a) or 1.0), _tol(max(a.shape), q))


def _gram(a, r):
    if np.any(np.tril(r, -1) != 0):
        return "R is not upper triangular"
    return _bound("||R^H R - A^H A||/||A||^2", _norm(_h(r) @ r - _h(a) @ a) / (_norm(a) ** 2 or 1.0),
                  _tol(max(a.shape), r))


def _lstsq(inputs, args, result, source):
    a, b = _f(inputs["a"]), _f(inputs["b"])
    x, residuals, rank, s = result
    if s is None and args.get("lapack_driver") == "gelsy":   # scipy's gelsy returns no singular values
        s = np.linalg.svd(a, compute_uv=False)
    if np.iscomplexobj(s) or np.iscomplexobj(residuals):
        return "s or the residuals are complex; numpy's are real"
    ref_s = np.linalg.svd(a, compute_uv=False)
    if np.asarray(s).shape != ref_s.shape:
        return f"s has shape {np.shape(s)}, numpy's {ref_s.shape}"
    bad = _bound("|s - numpy's s|/s_max", _norm(s - ref_s) / (ref_s[0] or 1.0), _tol(max(a.shape), x))
    if bad is not True:
        return bad
    if rank < a.shape[1]:
        ref = np.linalg.lstsq(a, b, rcond=None)[0]
        return _bound("||x - numpy's x||/||x||", _norm(x - ref) / (_norm(ref) or 1.0), np.sqrt(_tol(1, x)))
    r = _h(a) @ (a @ x - b)   # optimality: the residual is orthogonal to A's columns
    return _bound("||A^H(Ax - b)||/(||A|| (||A|| ||x|| + ||b||))", _norm(r) / (_norm(a) * (_norm(a) * _norm(x)
                  + _norm(b)) or 1.0), _tol(max(a.shape), x))


def _svd(inputs, args, result, source):
    a = _f(inputs["a"])
    ref_s = np.linalg.svd(a, compute_uv=False)
    if not args.get("compute_uv", True):
        s = np.asarray(result)
        return _bound("|s - numpy's s|/s_max", _norm(s - ref_s) / (ref_s[0] or 1.0), _tol(max(a.shape), s))
    u, s, vh = result
    if np.iscomplexobj(s):
        return f"s is {np.asarray(s).dtype}; numpy's singular values are real"
    k = len(ref_s)
    bad = _bound("|s - numpy's s|/s_max", _norm(s - ref_s) / (ref_s[0] or 1.0), _tol(max(a.shape), s))
    for what, check in (("s", bad), ("U", _orthonormal(u, "U")), ("Vh", _orthonormal(_h(vh), "V"))):
        if check is not True:
            return check
    rebuilt = np.asarray(u)[:, :k] * s @ np.asarray(vh)[:k]
    return _bound("||U S Vh - A||/||A||", _norm(rebuilt - a) / (_norm(a) or 1.0), _tol(max(a.shape), s))


def _eigh(inputs, args, result, source):
    a = _f(inputs["a"])
    lower = bool(args.get("lower", True)) if source == "scipy" else args.get("UPLO", "L") in ("L", "l")
    a = _sym(a, lower, True)
    ref = np.linalg.eigvalsh(a)
    if args.get("subset_by_index") is not None:      # scipy's subsets: the same slice of numpy's eigenvalues
        lo, hi = args["subset_by_index"]
        ref = ref[lo:hi + 1]
    elif args.get("subset_by_value") is not None:
        lo, hi = args["subset_by_value"]
        ref = ref[(ref > lo) & (ref <= hi)]
    w = np.asarray(result if args.get("eigvals_only") else result[0])
    if w.shape != ref.shape:
        return f"w has shape {w.shape}, numpy's {ref.shape}"
    if np.iscomplexobj(w):
        return f"w is {w.dtype}; numpy's eigenvalues of a Hermitian matrix are real"
    bad = _bound("|w - numpy's w|/|w_max|", _norm(w - ref) / (np.abs(ref).max() or 1.0), _tol(a.shape[0], w))
    if bad is not True or args.get("eigvals_only"):
        return bad
    v = np.asarray(result[1])
    return _orthonormal(v, "V") if _orthonormal(v, "V") is not True else _bound(
        "||AV - VW||/||A||", _norm(a @ v - v * w) / (_norm(a) or 1.0), _tol(a.shape[0], w))


def _lu(inputs, args, result, source):
    a = _f(inputs["a"])
    if args.get("permute_l"):
        pl, u = result
        rebuilt = pl @ u
    else:
        p, l, u = result
        rebuilt = l[p] @ u if args.get("p_indices") else p @ l @ u
    return _bound("||PLU - A||/||A||", _norm(rebuilt - a) / (_norm(a) or 1.0), _tol(max(a.shape), u))


def _unpack_lu(lu, piv) -> np.ndarray:
    """A from lu_factor's ``(lu, piv)``: P A = L U with the row swaps i <-> piv[i] applied in order."""
    lu = _f(lu)
    n = lu.shape[0]
    a = (np.tril(lu, -1) + np.eye(n)) @ np.triu(lu)
    order = np.arange(n)
    for i, p in enumerate(np.asarray(piv)):
        order[[i, p]] = order[[p, i]]
    out = np.empty_like(a)
    out[order] = a
    return out


def _lu_factor(inputs, args, result, source):
    a = _f(inputs["a"])
    lu, piv = result
    rebuilt = _unpack_lu(lu, piv)
    return _bound("||P^T L U - A||/||A||", _norm(rebuilt - a) / (_norm(a) or 1.0), _tol(a.shape[0], lu))


def _lu_solve(inputs, args, x, source):
    lu, piv = inputs["lu_and_piv"]
    a = _unpack_lu(lu, piv)
    if args.get("trans", 0) == 1:
        a = a.T
    elif args.get("trans", 0) == 2:
        a = _h(a)
    return _residual(a, x, _f(inputs["b"]))


CHECKS = {"solve": _solve, "inv": _inv, "det": _det, "slogdet": _slogdet, "cholesky": _cholesky,
          "cho_factor": _cho_factor, "cho_solve": _cho_solve, "solve_triangular": _solve_triangular, "qr": _qr,
          "lstsq": _lstsq, "svd": _svd, "eigh": _eigh, "lu": _lu, "lu_factor": _lu_factor, "lu_solve": _lu_solve}
