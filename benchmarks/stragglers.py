"""Backup tasks at 3,000 workers, simulated: a 65,536^2 GEMM (tile 4096) on today's Lambda with 1% of attempts
5x slower, backups on and off, and the straggler-free job for reference ("early": backups launched on a
progress projection, before the attempt was overdue; GETs and PUTs include the progress reports and their reads) (numpywren.simulate.predict: the real
plan and scheduler on simulated workers; nothing is read or written).

    python -m benchmarks.stragglers [--workers 3000] [--rate 0.01] [--factor 5] [--backups 1.5] [--seed 0]
        [--driver-seconds 0.0005]
"""
from __future__ import annotations

import argparse

from numpywren.backups import BACKUP_FACTOR
from numpywren.simulate import predict


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=3000)
    parser.add_argument("--size", type=int, default=65536)
    parser.add_argument("--tile", type=int, default=4096)
    parser.add_argument("--rate", type=float, default=0.01, help="share of attempts that straggle")
    parser.add_argument("--factor", type=float, default=5.0, help="how much slower a straggling attempt runs")
    parser.add_argument("--backups", type=float, default=BACKUP_FACTOR, help="the scheduler's backup factor")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--driver-seconds", type=float, default=None,
                        help="the driver's seconds per scheduler step (default: measured, which varies with load; "
                             "fix it to compare policies run for run)")
    args = parser.parse_args(argv)
    print(f"{'stragglers':>10}  {'backups':>7}  {'seconds':>8}  {'vs none':>7}  {'attempts':>8}  "
          f"{'launched':>8}  {'won':>4}  {'early':>5}  {'GETs':>7}  {'PUTs':>7}  {'cost $':>6}")
    base = None
    for rate, backups in ((0.0, None), (0.0, args.backups), (args.rate, None), (args.rate, args.backups)):
        p = predict("matmul", (args.size,), args.workers, args.tile, concurrency=args.workers, seed=args.seed,
                    driver_seconds_per_task=args.driver_seconds, straggler_rate=rate, straggler_factor=args.factor,
                    backups=backups)
        base = p.seconds if base is None else base
        print(f"{rate:>10.0%}  {str(backups or 'off'):>7}  {p.seconds:>8.1f}  {p.seconds / base:>6.2f}x  "
              f"{p.attempts:>8}  {p.backups:>8}  {p.backups_won:>4}  {p.backups_projected:>5}  {p.gets:>7}  {p.puts:>7}  "
              f"{p.cost.total:>6.2f}", flush=True)


if __name__ == "__main__":
    main()
