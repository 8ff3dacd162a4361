"""Stand-ins for numpy.linalg / scipy.linalg functions that run numpywren's function of the same name.

A stand-in binds the call to the original function's signature (so positional
arguments mean what they mean in numpy/scipy), translates the few names whose
spelling differs (numpy's ``upper=``, scipy's ``cond=`` and qr modes), stores
every matrix argument as a BigMatrix of tiny tiles (about three tiles per
dimension, ragged, so multi-tile paths run), looks numpywren's function up *at
call time* (a function not built yet raises :class:`MissingFunction`), checks
the answer independently (:mod:`tests.numpy_spec.verify`) and converts
BigMatrix results back to numpy. Every call is appended to ``CALLS`` with its
outcome, for the report's classification of causes.

Integer and boolean matrices are stored as float64 first, as numpy.linalg
converts them: a BigMatrix holds floats, and that conversion is the user's
one line, not a linear-algebra feature. For scipy's functions, float16 inputs
become float32 first, as scipy converts them (exactly: a widening). numpy's
functions get float16 as it is (numpy.linalg raises its TypeError, and so does
numpywren), and longdouble stays longdouble for both (scipy narrows it to
float64 silently; numpywren refuses a lossy conversion with numpy's TypeError).
"""
from __future__ import annotations

import dataclasses
import importlib
import inspect
import math

import numpy as np

import numpywren
from tests.numpy_spec import verify

#: the calls of the current test: dicts (function, source, features, error, verified)
CALLS: list[dict] = []
#: the executor and store every stand-in uses (set by the plugin)
CONTEXT: dict = {}


class MissingFunction(NotImplementedError):
    """numpywren has no function of this name yet."""


@dataclasses.dataclass(frozen=True)
class Spec:
    """How one numpy/scipy function maps onto numpywren's."""
    name: str                      # numpywren's function name
    matrices: tuple = ("a",)       # parameters stored as a BigMatrix ("lu_and_piv" etc.: first item of the pair)
    tiling: str = "square"         # "square" tiles, or "rows": row blocks with all columns in one tile (TSQR)
    renames: dict = dataclasses.field(default_factory=dict)      # source keyword -> numpywren keyword
    defaults: dict = dataclasses.field(default_factory=dict)     # source defaults whose meaning differs
    values: dict = dataclasses.field(default_factory=dict)       # keyword -> {source value: numpywren value}


_QR_MODES = {"full": "complete", "economic": "reduced", "r": "r", "raw": "raw"}
_SCIPY_CHECKED = {"check_finite": True}   # scipy checks by default; numpywren, like numpy, does not

NUMPY = {
    "solve": Spec("solve"),
    "inv": Spec("inv"),
    "det": Spec("det"),
    "slogdet": Spec("slogdet"),
    "cholesky": Spec("cholesky", renames={"upper": "lower"}, values={"upper": {True: False, False: True}}),
    "qr": Spec("qr", tiling="rows"),
    "lstsq": Spec("lstsq", tiling="rows"),
    "svd": Spec("svd", tiling="rows"),
    "eigh": Spec("eigh", renames={"UPLO": "lower"}, values={"UPLO": {"L": True, "l": True, "U": False, "u": False}}),
}

SCIPY = {
    "solve": Spec("solve", defaults=_SCIPY_CHECKED),
    "inv": Spec("inv", defaults=_SCIPY_CHECKED),
    "det": Spec("det", defaults=_SCIPY_CHECKED),
    "lstsq": Spec("lstsq", tiling="rows", renames={"cond": "rcond"}, defaults=_SCIPY_CHECKED),
    "lu": Spec("lu", defaults=_SCIPY_CHECKED),
    "lu_factor": Spec("lu_factor", defaults=_SCIPY_CHECKED),
    "lu_solve": Spec("lu_solve", matrices=("lu_and_piv",), defaults=_SCIPY_CHECKED),
    "cholesky": Spec("cholesky", defaults={"lower": False, **_SCIPY_CHECKED}),
    "cho_factor": Spec("cho_factor", defaults={"lower": False, **_SCIPY_CHECKED}),
    "cho_solve": Spec("cho_solve", matrices=("c_and_lower",), defaults=_SCIPY_CHECKED),
    "solve_triangular": Spec("solve_triangular", defaults={"lower": False, **_SCIPY_CHECKED}),
    "qr": Spec("qr", tiling="rows", defaults={"mode": "full", **_SCIPY_CHECKED}, values={"mode": _QR_MODES}),
    "svd": Spec("svd", tiling="rows", defaults=_SCIPY_CHECKED),
    "eigh": Spec("eigh", defaults=_SCIPY_CHECKED),
}


def lookup(name: str, source: str = "scipy"):
    """numpywren's function ``name`` as it is now: for numpy's tests ``numpywren.linalg.<name>`` (numpy's names
    and semantics) before ``numpywren.<name>``, for scipy's the other way round."""
    modules = [numpywren, importlib.import_module("numpywren.linalg")]
    for module in modules[::-1] if source == "numpy" else modules:
        fn = getattr(module, name, None)
        if inspect.ismodule(fn):   # a submodule of the same name (numpywren.qr) shadows the lazy export
            fn = getattr(fn, name, None)
        if callable(fn) and not inspect.isclass(fn):
            return fn
    return None


def features(arrays) -> list[str]:
    """What is special about a call's inputs (the report's causes come from these first)."""
    found = []
    for x in arrays:
        if x.ndim > 2:
            found.append("stacked")
        if x.ndim == 0:
            found.append("0-D input")
        if np.iscomplexobj(x):
            found.append("complex")
        if x.size == 0:
            found.append("empty shape")
        if x.dtype.kind in "fc" and x.dtype not in (np.float32, np.float64, np.complex64, np.complex128):
            found.append("float16/longdouble")
        if x.dtype.kind not in "fcbiu":
            found.append(f"dtype {x.dtype.kind}")
        if x.ndim == 2 and 0 < x.shape[0] < x.shape[1]:
            found.append("wide")
    return sorted(set(found))


def tile_shape(shape, tiling: str) -> tuple[int, int]:
    """About three tiles per dimension (ragged when it does not divide); TSQR's tiling keeps all columns."""
    rows, cols = (shape + (1,))[:2] if len(shape) == 1 else shape[:2]
    t = max(1, math.ceil(max(rows, cols, 1) / 3))
    if tiling == "rows":
        return max(1, math.ceil(rows / 3)), max(1, cols)
    return t, t


def store(x: np.ndarray, tiling: str):
    """``x`` as a BigMatrix in the adapter's store (numpy's int->float64 conversion first)."""
    if x.dtype.kind in "biu":
        x = x.astype(np.float64)
    return numpywren.BigMatrix.from_numpy(x, tile_shape(x.shape, tiling), CONTEXT["store"])


def to_numpy(value):
    """BigMatrix results (also inside tuples and named tuples) as numpy arrays."""
    if isinstance(value, numpywren.BigMatrix):
        return value.to_numpy()
    if isinstance(value, tuple):
        items = [to_numpy(v) for v in value]
        return type(value)(*items) if hasattr(value, "_fields") else type(value)(items)
    return value


def _scipy_upcast(value):
    """scipy's float16 -> float32 conversion of an input (a pair's first item too); anything else as it is."""
    if isinstance(value, tuple) and value and getattr(value[0], "dtype", None) == np.float16:
        return (value[0].astype(np.float32), *value[1:])
    if getattr(value, "dtype", None) == np.float16:
        return value.astype(np.float32)
    return value


def make(source: str, original, spec: Spec):
    """The stand-in for ``original`` (numpy's or scipy's function)."""
    signature = inspect.signature(original)

    def stand_in(*args, **kwargs):
        bound = signature.bind(*args, **kwargs)
        call = {"function": spec.name, "source": source, "features": [], "error": None, "verified": None}
        CALLS.append(call)
        arguments = {**{k: v for k, v in spec.defaults.items() if k in signature.parameters},
                     **bound.arguments}
        if source == "scipy":
            arguments = {k: _scipy_upcast(v) if k in spec.matrices or k == "b" else v for k, v in arguments.items()}
        arrays = [np.asarray(v[0] if k in ("lu_and_piv", "c_and_lower") else v)
                  for k, v in arguments.items() if k in spec.matrices or k in ("b",) and v is not None]
        call["features"] = features(arrays)
        try:
            fn = lookup(spec.name, source)
            if fn is None:
                raise MissingFunction(f"numpywren has no {spec.name}()")
            args_nw, kwargs_nw, inputs = translate(spec, arguments, inspect.signature(fn).parameters)
            if "executor" in inspect.signature(fn).parameters:
                kwargs_nw["executor"] = CONTEXT["executor"]
            result = fn(*args_nw, **kwargs_nw)
            answer = to_numpy(result)
        except Exception as e:
            call["error"] = f"{type(e).__name__}: {e}"
            call["error_type"] = type(e).__name__
            raise
        call["verified"] = verify.check(source, spec.name, inputs, arguments, answer)
        if call["verified"] is not True:
            call["error"] = f"wrong answer: {call['verified']}"
            raise verify.WrongAnswer(f"numpywren.{spec.name}: {call['verified']}")
        return answer

    stand_in.__name__ = stand_in.__qualname__ = original.__name__
    stand_in.__wrapped_original__ = original
    return stand_in


def translate(spec: Spec, arguments: dict, accepted=()):
    """numpywren's arguments for a bound numpy/scipy call: ``(args, kwargs)``, and the numpy inputs (for the
    checks). The matrix and the right-hand side go positionally (numpywren spells them A and B); a keyword
    numpywren's function takes under numpy's own name (``upper=``) is passed as it is, else translated."""
    args, kwargs, inputs = [], {}, {}
    for key, value in arguments.items():
        if key in spec.matrices:
            pair = key in ("lu_and_piv", "c_and_lower")
            a = np.asarray(value[0] if pair else value)
            inputs[key] = (a, value[1]) if pair else a
            stored = store(a, spec.tiling)
            args.append((stored, value[1]) if pair else stored)
        elif key == "b" and value is not None:
            inputs["b"] = np.asarray(value)
            args.append(value)
        else:
            if key in spec.renames and key in accepted:
                kwargs[key] = value
                continue
            if key in spec.values and not isinstance(value, np.ndarray):
                try:
                    value = spec.values[key].get(value, value)
                except TypeError:   # unhashable: passed on as it is, for numpywren to judge
                    pass
            kwargs[spec.renames.get(key, key)] = value
    return args, kwargs, inputs
