"""``numpywren predict OP SIZES --workers W --tile T``: what a job would do at cloud scale, before paying for it.

Prints the predicted wall time, GFLOPS, bytes moved, S3 requests, Lambda cost
and what bounds the job (numpywren.simulate); ``--plot FILE.png`` also draws
the scaling curve for W = 1 ... 3,000 workers (log axes).
"""
from __future__ import annotations

import argparse

from numpywren import simulate
from numpywren.sim_params import PLATFORMS

SCALING_WORKERS = (1, 3, 10, 30, 100, 300, 1000, 3000)


def _sizes(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(v) for v in text.replace("x", ",").split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"SIZES must be comma-separated integers, got {text!r}") from None
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"SIZES must be positive integers, got {text!r}")
    return sizes


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("op", choices=simulate.OPERATIONS, help="the operation")
    parser.add_argument("sizes", type=_sizes, metavar="SIZES",
                        help="matmul: N or M,K,N; syrk and kernel: N,D (X is N x D); cholesky: N")
    parser.add_argument("--workers", type=int, required=True, help="workers (Lambda functions running at once)")
    parser.add_argument("--tile", type=int, required=True, help="tile size (square tiles)")
    parser.add_argument("--memory", type=int, default=None, metavar="MB",
                        help="Lambda memory per worker (also sets its vCPUs); default the platform's")
    parser.add_argument("--platform", default="lambda", metavar="NAME|FILE.json",
                        help=f"parameter set: one of {', '.join(sorted(PLATFORMS))} (numpywren/sim_params.py), or "
                             f"a profile written by numpywren calibrate; default lambda")
    parser.add_argument("--concurrency", type=int, default=None,
                        help="account concurrency limit (default the platform's: Lambda's default quota)")
    parser.add_argument("--dtype", default="float64", choices=["float32", "float64"])
    parser.add_argument("--plot", default=None, metavar="FILE.png",
                        help="also predict W = 1 ... 3,000 and draw the scaling curve into this PNG")


def run(args: argparse.Namespace) -> int:
    kwargs = {"memory_mb": args.memory, "platform": args.platform, "dtype": args.dtype,
              "concurrency": args.concurrency}
    prediction = simulate.predict(args.op, args.sizes, args.workers, args.tile, **kwargs)
    print(prediction)
    if args.plot:
        if args.concurrency is None:
            kwargs["concurrency"] = max(SCALING_WORKERS)  # the curve shows the job, not the default quota
        curve = simulate.scaling(args.op, args.sizes, args.tile, SCALING_WORKERS, **kwargs)
        plot_scaling(curve, args.plot)
        print(f"scaling plot: {args.plot}")
    return 0


def plot_scaling(predictions: list, path, title: str | None = None) -> None:
    """GFLOPS against workers (log-log), each point labelled with what bounds it; ideal linear scaling dashed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ValueError("the plot needs matplotlib: pip install 'numpywren[bench]'") from None
    first = predictions[0]
    workers = [p.workers for p in predictions]
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    ax.plot(workers, [p.gflops for p in predictions], "o-", label="predicted")
    per_worker = first.gflops / first.workers
    ax.plot(workers, [per_worker * w for w in workers], "k--", linewidth=0.8, label="linear from W=1")
    for p in predictions:
        ax.annotate(p.bound, (p.workers, p.gflops), textcoords="offset points", xytext=(4, -10), fontsize=7)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("workers")
    ax.set_ylabel("GFLOPS")
    shape = "x".join(map(str, first.sizes))
    ax.set_title(title or f"{first.op} {shape}, tile {first.tile}, {first.platform} ({first.memory_mb} MB)",
                 fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
