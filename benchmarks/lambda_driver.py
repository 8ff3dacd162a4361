"""The Lambda driver's own cost, against moto and a simulated Lambda: CPU per started task, S3 requests
per completed task, LIST requests per job; this release against an older one, side by side.

A simulator process runs a moto S3 server and a loopback Lambda Invoke endpoint
whose "workers" run nothing: each accepted event completes ``--task-seconds``
(uniform +-50%) later, when the simulator writes the call's result under
``event["result"]`` and, if the event asks (``"done": true``), its done-marker
(numpywren.protocol), exactly as ``numpywren.worker.handle`` would. So Lambda
concurrency of ``--workers`` (1,000 and 3,000 by default) costs no CPU here
and the driver is measured alone: for each code tree (``--code NAME=PATH``,
default this tree as "new" and ``/work/wt-old`` as "old" when present) a
driver process runs ``LambdaExecutor.map`` of ``2 x workers`` calls with
``max_concurrency=workers`` and waits for all results (and, for a tree that has
``submit_tasks``, the same number of tile-task specs, the path jobs take: no
argument upload), counting

* driver CPU per started task (``time.process_time`` of the driver process,
  from before ``map`` to the last result, divided by the invokes the
  simulator accepted);
* S3 requests per completed task, and LIST requests for the whole job (every
  boto3 API call the driver makes is counted by operation);
* the completion rate reached (tasks / wall seconds), stated next to them.

Run with ``python -m benchmarks.lambda_driver`` (``--tiny`` for a smoke run).
"""
from __future__ import annotations

import argparse
import heapq
import json
import os
import random
import re
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from benchmarks import common

NAME = "lambda_driver"
HERE = Path(__file__).resolve().parent
OLD_TREE = Path("/work/wt-old")
BUCKET = "numpywren-bench"
#: moto accepts any credentials; these keep boto3 from looking for real ones.
FAKE_AWS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_SESSION_TOKEN": "testing",
            "AWS_DEFAULT_REGION": "us-east-1"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workers", type=common.int_list, default=[1000, 3000],
                        help="simulated Lambda concurrency = max_concurrency (default 1000,3000)")
    parser.add_argument("--tasks-per-worker", type=int, default=2, help="calls per worker slot (default 2)")
    parser.add_argument("--rate", type=float, default=100.0,
                        help="target completions per second: task seconds = workers / rate (default 100)")
    parser.add_argument("--modes", default="map,tiles", help="map and/or tiles (default both)")
    parser.add_argument("--profile", metavar="DIR", default=None,
                        help="also profile the driver (cProfile on every thread, CPU time) into DIR/<code>-<workers>.prof "
                             "and print its top functions")
    parser.add_argument("--code", action="append", default=[],
                        help="NAME=PATH of a numpywren tree to measure (default new=this tree, old=/work/wt-old)")
    common.add_common_arguments(parser)


def main(argv: list[str] | None = None) -> int:
    if argv is None and len(sys.argv) > 1 and sys.argv[1] in ("--serve", "--drive"):
        return (_serve if sys.argv[1] == "--serve" else _drive)(json.loads(sys.argv[2]))
    return run(common.parse_args(NAME, __doc__, add_arguments, argv))


def run(args: argparse.Namespace) -> int:
    if args.tiny:
        args.workers, args.tasks_per_worker, args.rate = [50], 2, 100.0
    trees = dict(c.split("=", 1) for c in args.code) or {"new": str(HERE.parent)}
    if not args.code and (OLD_TREE / "numpywren").is_dir() and not args.tiny:
        trees["old"] = str(OLD_TREE)
    info = common.machine_info()
    print(f"Lambda driver benchmark on {common.describe_machine(info)}")
    rows = []
    modes = args.modes.split(",")
    runs = [(name, tree, "map") for name, tree in trees.items() if "map" in modes]
    runs += [(f"{name} tiles", tree, "tiles") for name, tree in trees.items() if "tiles" in modes
             and "def submit_tasks" in (Path(tree) / "numpywren/executors/base.py").read_text()]
    for workers in args.workers:
        for name, tree, mode in runs:
            task_seconds = workers / args.rate
            # workers of the same release as the driver: results in done-markers if the tree reads them
            outcomes = "def decode_outcome" in (Path(tree) / "numpywren/protocol.py").read_text()
            sim = subprocess.Popen([sys.executable, "-m", "benchmarks.lambda_driver", "--serve",
                                    json.dumps({"task_seconds": task_seconds, "outcomes": outcomes})],
                                   cwd=HERE.parent, stdout=subprocess.PIPE, stdin=subprocess.PIPE, text=True,
                                   env={**os.environ, **FAKE_AWS, "PYTHONPATH": str(HERE.parent)})
            try:
                ports = json.loads(sim.stdout.readline())
                config = {"tree": tree, "workers": workers, "tasks": workers * args.tasks_per_worker, "mode": mode,
                          **ports}
                if args.profile:
                    Path(args.profile).mkdir(parents=True, exist_ok=True)
                    config["profile"] = str(Path(args.profile).resolve() / f"{name.replace(' ', '-')}-{workers}.prof")
                out = subprocess.run([sys.executable, "-c", _DRIVE, json.dumps(config)], capture_output=True,
                                     text=True, env={**os.environ, **FAKE_AWS, "PYTHONPATH": tree}, cwd=tree, check=False)
                if out.returncode != 0:
                    print(out.stderr[-3000:], file=sys.stderr)
                    raise SystemExit(f"the {name} driver failed for {workers} workers")
                result = json.loads(out.stdout.strip().splitlines()[-1])
                if args.profile:
                    print(out.stdout.rpartition("\n{")[0])  # the profile's summary
            finally:
                sim.stdin.close()
                sim.wait(timeout=60)
            row = {"code": name, "workers": workers, "tasks": config["tasks"], "task_s": round(task_seconds, 2),
                   **result}
            rows.append(row)
            print(f"  {name:>4} {workers} workers: {row['cpu_ms_per_task']:.2f} ms CPU/task, "
                  f"{row['s3_per_task']:.2f} S3 req/task, {row['lists']} LISTs, {row['rate']:.0f} tasks/s; "
                  f"main thread {row.get('main_cpu_ms_per_task', float('nan')):.2f} ms/task; CPU ms/task by thread "
                  f"since its start: {row.get('cpu_ms_per_task_by_thread') or '-'}")
    common.print_table(rows, COLUMNS, title=f"Lambda driver against moto, simulated workers "
                                            f"(target {args.rate:g} completions/s)")
    paths = [common.write_csv(NAME, rows, info, args.out)]
    if not args.no_plot:
        paths.append(_plot(rows, args))
    common.report_paths(paths)
    return 0


COLUMNS = [("code", "code", ""), ("workers", "workers", ""), ("tasks", "tasks", ""),
           ("cpu_ms_per_task", "driver CPU ms/task", ".2f"), ("s3_per_task", "S3 req/task", ".2f"),
           ("lists", "LIST/job", ""), ("list_per_task", "LIST/task", ".3f"),
           ("listed_keys_per_task", "keys listed/task", ".1f"), ("rate", "tasks/s", ".0f"),
           ("submit_s", "map() s", ".2f"), ("wall_s", "wall s", ".1f")]


# -- the driver (runs in a subprocess with the measured tree on PYTHONPATH) -------------------------
_DRIVE = r'''
import collections, json, sys, threading, time
import botocore.client
config = json.loads(sys.argv[1])
profiles = []
if config.get("profile"):  # one cProfile per thread, on the thread's CPU clock; merged at the end
    import cProfile
    _run = threading.Thread.run
    def _profiled_run(self):
        prof = cProfile.Profile(time.thread_time)
        prof.enable()
        try:
            _run(self)
        finally:
            prof.disable()
            profiles.append(prof)
    threading.Thread.run = _profiled_run
counts = collections.Counter()
lock = threading.Lock()
real = botocore.client.BaseClient._make_api_call
def counted(self, operation, params):
    with lock:
        counts[(self.meta.service_model.service_name, operation)] += 1
    out = real(self, operation, params)
    if operation == "ListObjectsV2":
        with lock:
            counts[("s3", "listed keys")] += len(out.get("Contents", ()))
    return out
botocore.client.BaseClient._make_api_call = counted
from numpywren.executors.aws_lambda import LambdaExecutor
store = f"s3://{config['bucket']}/bench?endpoint={config['s3']}&region=us-east-1"
ex = LambdaExecutor("numpywren-bench", store=store, region="us-east-1", endpoint_url=config["lambda"],
                    max_concurrency=config["workers"], task_timeout=900)
counts.clear()
n = config["tasks"]
if config.get("profile"):
    main_prof = cProfile.Profile(time.thread_time)
    main_prof.enable()
cpu0, main0, t0 = time.process_time(), time.thread_time(), time.monotonic()
if config["mode"] == "tiles":  # JSON task specs in the events (what jobs submit); never run by the simulator
    specs = [{"id": f"t{i}", "op": "gemm", "run": "bench", "attempt": 1, "lease": 60.0, "m": [],
              "out": {"@": [0, 0, 0]}, "in": [], "params": {}} for i in range(n)]
    futures = ex.submit_tasks(specs)
else:
    futures = ex.map(abs, range(n))
submit = time.monotonic() - t0
values = ex.get_all_results(futures, timeout=3600)
wall, cpu, main_cpu = time.monotonic() - t0, time.process_time() - cpu0, time.thread_time() - main0
assert values == list(range(n)), "wrong results"
listed = counts.pop(("s3", "listed keys"), 0)
s3 = sum(v for (service, _), v in counts.items() if service == "s3")
lists = sum(v for (service, op), v in counts.items() if service == "s3" and op == "ListObjectsV2")
import urllib.request  # invokes as the simulator accepted them (202), however the driver sent them
invokes = json.load(urllib.request.urlopen(config["lambda"] + "/accepted"))["accepted"]
by_thread = collections.Counter()  # CPU seconds by thread kind (Linux: /proc), for "where it goes"
try:
    import os, re
    names = {t.native_id: re.sub(r"[_-](\d+|[0-9a-f]{8,})$", "", t.name) for t in threading.enumerate()}
    tick = os.sysconf("SC_CLK_TCK")
    for tid in os.listdir("/proc/self/task"):
        fields = open(f"/proc/self/task/{tid}/stat").read().rpartition(")")[2].split()
        by_thread[names.get(int(tid), "other")] += (int(fields[11]) + int(fields[12])) / tick
except OSError:
    pass
ex.shutdown()
if config.get("profile"):
    import io, pstats
    main_prof.disable()
    stats = pstats.Stats(main_prof)
    for prof in profiles:
        stats.add(prof)
    stats.dump_stats(config["profile"])
    for order in ("tottime", "cumulative"):
        out = io.StringIO()
        pstats.Stats(config["profile"], stream=out).sort_stats(order).print_stats(25)
        print(out.getvalue()[-6000:])
print(json.dumps({"cpu_ms_per_task": 1000 * cpu / invokes, "s3_per_task": s3 / n, "lists": lists,
                  "list_per_task": lists / n, "listed_keys_per_task": listed / n, "rate": n / wall, "submit_s": submit, "wall_s": wall,
                  "invokes": invokes, "main_cpu_ms_per_task": 1000 * main_cpu / invokes,
                  "cpu_ms_per_task_by_thread": {k: round(1000 * v / invokes, 3) for k, v in by_thread.items()},
                  "ops": {f"{s}.{o}": v for (s, o), v in sorted(counts.items())}}))
'''


def _drive(config: dict) -> int:  # pragma: no cover - kept for symmetry with --serve
    raise SystemExit("run through `python -m benchmarks.lambda_driver`")


# -- the simulator: moto S3 + a Lambda endpoint whose workers only write outcomes -------------------
def _serve(config: dict) -> int:
    import logging

    import boto3
    import cloudpickle
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no line per request

    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    s3_url = f"http://127.0.0.1:{moto._server.server_port}"
    s3 = boto3.client("s3", endpoint_url=s3_url, region_name="us-east-1",
                      config=boto3.session.Config(max_pool_connections=64))
    s3.create_bucket(Bucket=BUCKET)
    due: list = []
    cond = threading.Condition()
    task_seconds = float(config["task_seconds"])
    writers = ThreadPoolExecutor(32)

    def complete(event: dict) -> None:
        now = time.time()
        payload = {"ok": True, "value": int(event["call"]), "stats": {"worker": "sim", "start": now,
                                                                      "end": now, "seconds": 0.0}}
        body = json.dumps(payload).encode() if event.get("kind") == "tile" else cloudpickle.dumps(payload)
        s3.put_object(Bucket=BUCKET, Key=f"bench/{event['result']}", Body=body)
        if event.get("done"):
            session = event["callset"].split("/", 1)[0]
            key = f"jobs/{session}/done/{int(time.time() * 1000):014d}@{event['callset'].replace('/', '~')}@" \
                  f"{event['call']}"
            if config["outcomes"]:  # the result rides in the marker's name, as numpywren.worker writes it
                from numpywren import protocol

                key = protocol.done_key(event["callset"], event["call"], time.time(), body)
            s3.put_object(Bucket=BUCKET, Key=f"bench/{key}", Body=b"")

    def scheduler() -> None:
        while True:
            with cond:
                while not due or due[0][0] > time.monotonic():
                    cond.wait(None if not due else max(0.0, due[0][0] - time.monotonic()))
                _, _, event = heapq.heappop(due)
            writers.submit(complete, event)

    threading.Thread(target=scheduler, daemon=True).start()
    seq = iter(range(1 << 62))
    accepted = [0]

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # persistent connections, as Lambda's endpoint keeps them

        def log_message(self, *args):
            pass

        def _reply(self, status: int, body: dict | None) -> None:
            data = json.dumps(body).encode() if body is not None else b""
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            if self.path == "/accepted":  # the benchmark's own question: invokes accepted so far
                return self._reply(200, {"accepted": accepted[0]})
            if self.path.rstrip("/").endswith("account-settings"):
                return self._reply(200, {"AccountLimit": {"UnreservedConcurrentExecutions": 10000}})
            return self._reply(200, {})  # no reserved concurrency

        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            if not re.match(r"^/2015-03-31/functions/[^/]+/invocations", self.path):
                return self._reply(404, {"message": "no route"})
            event = json.loads(body)
            with cond:
                heapq.heappush(due, (time.monotonic() + task_seconds * random.uniform(0.5, 1.5), next(seq), event))
                accepted[0] += 1
                cond.notify()
            self._reply(202, None)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    print(json.dumps({"s3": s3_url, "lambda": f"http://127.0.0.1:{server.server_address[1]}",
                      "bucket": BUCKET}), flush=True)
    sys.stdin.read()  # until the benchmark closes our stdin
    server.shutdown()
    moto.stop()
    return 0


def _plot(rows: list[dict], args):
    plt = common.pyplot()
    if plt is None:
        return None
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6))
    codes = sorted({r["code"] for r in rows})
    workers = sorted({r["workers"] for r in rows})
    width = 0.8 / max(1, len(codes))
    for ax, (key, label) in zip(axes, (("cpu_ms_per_task", "driver CPU ms per started task"),
                                       ("s3_per_task", "S3 requests per completed task"),
                                       ("lists", "LIST requests per job"))):
        for k, code in enumerate(codes):
            values = [next((r[key] for r in rows if r["code"] == code and r["workers"] == w), 0) for w in workers]
            ax.bar([i + k * width for i in range(len(workers))], values, width, label=code)
        ax.set_xticks([i + width * (len(codes) - 1) / 2 for i in range(len(workers))], [str(w) for w in workers])
        ax.set_xlabel("simulated Lambda workers")
        ax.set_title(label, fontsize=9)
        ax.legend(fontsize=8)
    return common.save_figure(fig, NAME, args.out)


if __name__ == "__main__":
    sys.exit(main())
