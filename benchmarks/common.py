"""What every benchmark shares: machine description, CSV + PNG output, compact tables, a scratch store.

A result is only meaningful next to the machine that produced it, so every CSV
starts with ``# key: value`` lines describing the CPU, the BLAS library and
the load when the run started (read it back with
``pandas.read_csv(path, comment="#")``). Output goes to ``benchmarks/results/``
unless ``--out DIR`` or ``$NUMPYWREN_BENCH_OUT`` says otherwise.
"""
from __future__ import annotations

import argparse
import contextlib
import csv
import datetime
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterable, Iterator, Sequence

#: how the running benchmark was invoked (``numpywren bench`` sets it, for --help and usage lines)
PROG = "python -m benchmarks."
RESULTS_DIR = Path(__file__).resolve().parent / "results"
OUT_ENV = "NUMPYWREN_BENCH_OUT"


# -- command line ------------------------------------------------------------------------------
def parse_args(name: str, doc: str, add_arguments, argv: list[str] | None) -> argparse.Namespace:
    """Parse a benchmark's command line: its own options (``add_arguments``) plus the common ones."""
    from numpywren.cli import PlainHelpFormatter

    parser = argparse.ArgumentParser(prog=f"{PROG}{name}", description=doc.splitlines()[0],
                                     formatter_class=PlainHelpFormatter)
    add_arguments(parser)
    args = parser.parse_args(argv)
    if args.tiny and args.out is None and not os.environ.get(OUT_ENV):
        args.out = tempfile.mkdtemp(prefix=f"numpywren-bench-{name}-tiny-")  # never over real results
    return args


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    """--tiny, --out and --no-plot, the same in every benchmark."""
    parser.add_argument("--tiny", action="store_true",
                        help="a few-second run at toy sizes (used by the smoke test; numbers mean nothing)")
    parser.add_argument("--out", default=None,
                        help=f"folder for the CSV and PNG (default ${OUT_ENV} or benchmarks/results; "
                             "with --tiny a new temporary folder)")
    parser.add_argument("--no-plot", action="store_true", help="skip the PNG even if matplotlib is installed")


def blas_list(text: str) -> list[str]:
    """argparse type for ``--blas``: comma-separated choices of the tile kernels' BLAS, each ``numpy``
    (numpy/scipy's OpenBLAS), ``mkl`` (the layer's MKL library, ``layers/mkl_lib.py``) or a library path."""
    values = [v.strip() for v in text.split(",") if v.strip()]
    bad = [v for v in values if v not in ("numpy", "mkl") and not os.path.isfile(v)]
    if not values or bad:
        raise argparse.ArgumentTypeError(f"expected numpy, mkl or library paths, got {text!r}")
    return values


def blas_env(choice: str) -> dict[str, str]:
    """Worker environment selecting the tile kernels' BLAS (``blocks.blas``): ``$NUMPYWREN_BLAS_LIB``. For
    ``mkl``, the library in ``layers/.cache/mkl/build`` (linked there first if absent; the mkl-static
    wheel is downloaded once, ~213 MB)."""
    from blocks import blas

    if choice != "mkl":
        return {blas.ENV: choice}
    import importlib.util

    spec = importlib.util.spec_from_file_location("numpywren_mkl_lib", Path(__file__).resolve().parents[1]
                                                  / "layers" / "mkl_lib.py")
    mkl_lib = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mkl_lib)
    built = mkl_lib.cache_dir() / "build" / mkl_lib.LIB_NAME
    if not built.is_file():
        mkl_lib.build(built.parent)
    return {blas.ENV: str(built)}


def int_list(text: str) -> list[int]:
    """argparse type for comma-separated integers, e.g. ``--sizes 2048,4096``."""
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values or min(values) <= 0:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def results_dir(out: str | os.PathLike | None = None) -> Path:
    path = Path(out or os.environ.get(OUT_ENV) or RESULTS_DIR)
    path.mkdir(parents=True, exist_ok=True)
    return path


# -- machine -----------------------------------------------------------------------------------
def machine_info() -> dict[str, str]:
    """CPU, cores, load, Python/numpy versions and the BLAS numpy really loaded (threadpoolctl)."""
    import numpy as np

    info = {
        "date_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S"),
        "host": platform.node(),
        "os": platform.platform(),
        "cpu": _cpu_model(),
        "logical_cores": str(os.cpu_count()),
        "usable_cores": str(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()),
        "load_average_1m": f"{os.getloadavg()[0]:.2f}" if hasattr(os, "getloadavg") else "n/a",
        "memory_gib": _memory_gib(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "numpywren": _version("numpywren"),
        "dask": _version("dask"),
    }
    info.update(_blas_info())
    from blocks import blas

    info["tile_kernel_blas"] = blas.describe()  # what the local workers' tile kernels call (blocks.blas)
    return info


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_gib() -> str:
    try:
        pages, size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
        return f"{pages * size / 2**30:.1f}"
    except (ValueError, OSError, AttributeError):
        return "n/a"


def _version(module: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(module)
    except metadata.PackageNotFoundError:
        return "not installed"


def _blas_info() -> dict[str, str]:
    """The BLAS as loaded at run time (threadpoolctl) and as numpy was built against (its config)."""
    import numpy as np

    out = {}
    try:
        from threadpoolctl import threadpool_info

        blas = [m for m in threadpool_info() if m.get("user_api") == "blas"]
        if blas:
            m = blas[0]
            out["blas_runtime"] = f"{m.get('internal_api')} {m.get('version')}"
            out["blas_architecture"] = str(m.get("architecture"))
            out["blas_default_threads"] = str(m.get("num_threads"))
            out["blas_threading_layer"] = str(m.get("threading_layer"))
    except ImportError:
        out["blas_runtime"] = "threadpoolctl not installed"
    try:
        deps = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        out["numpy_blas_build"] = f"{deps.get('name')} {deps.get('version')}"
    except Exception:  # noqa: BLE001 - older numpy has no dict mode; the runtime entry is what matters
        pass
    return out


def describe_machine(info: dict[str, str]) -> str:
    """One line for the top of a benchmark's printout."""
    return (f"{info['cpu']}, {info['usable_cores']} cores, {info['memory_gib']} GiB, "
            f"BLAS {info.get('blas_runtime', '?')} ({info.get('blas_architecture', '?')}), "
            f"numpy {info['numpy']}, load {info['load_average_1m']} at start")


# -- output ------------------------------------------------------------------------------------
def write_csv(name: str, rows: Sequence[dict], info: dict[str, str], out=None) -> Path:
    """Write ``rows`` to ``<out>/<name>.csv`` after ``# key: value`` lines of machine info."""
    path = results_dir(out) / f"{name}.csv"
    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    with open(path, "w", newline="") as f:
        for key, value in info.items():
            f.write(f"# {key}: {value}\n")
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: _csv_value(v) for k, v in row.items()})
    return path


def _csv_value(v):
    return f"{v:.6g}" if isinstance(v, float) else v


def pyplot():
    """``matplotlib.pyplot`` on the file-only Agg backend, or None (with a message) if not installed."""
    try:
        import matplotlib
    except ImportError:
        print("matplotlib is not installed: skipping the PNG (pip install 'numpywren[bench]')")
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, name: str, out=None) -> Path:
    path = results_dir(out) / f"{name}.png"
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path


def print_table(rows: Sequence[dict], columns: Sequence[tuple[str, str, str]], title: str | None = None) -> str:
    """Print rows as an aligned table. ``columns`` are (key, header, format spec such as '.1f')."""
    cells = [[h for _, h, _ in columns]]
    for row in rows:
        cells.append([_fmt(row.get(k), spec) for k, _, spec in columns])
    widths = [max(len(r[c]) for r in cells) for c in range(len(columns))]
    lines = ["  ".join(v.rjust(w) for v, w in zip(r, widths)) for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    text = "\n".join(([title] if title else []) + lines)
    print(text)
    sys.stdout.flush()
    return text


def _fmt(value, spec: str) -> str:
    if value is None or value == "":
        return "-"
    if isinstance(value, (int, float)) and spec:
        return format(value, spec)
    return str(value)


# -- scratch store and timing ------------------------------------------------------------------
@contextlib.contextmanager
def scratch_store(url: str | None = None, prefix: str = "bench") -> Iterator:
    """The store to benchmark: ``url`` if given (left in place; the benchmark deletes its own keys),
    else a LocalStore in a temporary folder that is removed afterwards."""
    from numpywren.storage import open_store

    if url:
        yield open_store(url)
        return
    tmp = tempfile.mkdtemp(prefix=f"numpywren-{prefix}-")
    try:
        yield open_store(tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


class Stopwatch:
    """``with Stopwatch() as t: ...; t.seconds``"""

    seconds = 0.0

    def __enter__(self):
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self._start


def warm_up(executor) -> None:
    """Start every worker process (interpreter + numpy import) before anything is timed."""
    executor.get_all_results(executor.map(abs, range(executor.workers * 2)))
    executor.cleanup()


def report_paths(paths: Iterable[Path | None]) -> None:
    for p in paths:
        if p is not None:
            print(f"wrote {p}")
