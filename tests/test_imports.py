"""The import structure: no circle in numpywren/, and a worker loads only the worker side.

Imports inside functions count as edges (they hide a circle, they do not remove it). An edge to one's
own ancestor package is not counted (it is always loaded first, and adds nothing); ``from numpywren
import name`` counts as an edge to the module the lazy package loads ``name`` from.
"""
import ast
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "numpywren"

#: Edges left on purpose, each with its reason (none today).
EXEMPT_EDGES: set = set()


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _lazy_table(name: str):
    """A table of numpywren/__init__.py's lazy loading (PEP 562 __getattr__): _EXPORTS, _INSTALLERS, ..."""
    tree = ast.parse((PACKAGE / "__init__.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == name:
            return ast.literal_eval(node.value)
    raise AssertionError(f"numpywren/__init__.py has no {name} table")


def _lazy_exports() -> dict:
    return _lazy_table("_EXPORTS")


def import_graph() -> dict[str, set[str]]:
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    exports = _lazy_exports()
    graph = {}
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        edges = set()
        for node in ast.walk(ast.parse(path.read_text())):  # every level: function bodies too
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    here = name.split(".") if is_package else name.split(".")[:-1]
                    base = ".".join(here[:len(here) - node.level + 1] + ([node.module] if node.module else []))
                for alias in node.names:
                    full = f"{base}.{alias.name}"
                    if full in modules:
                        targets.append(full)
                    elif base == "numpywren" and alias.name in exports:
                        targets.append(exports[alias.name])
                    else:
                        targets.append(base)
            for target in targets:
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target and target != name and not name.startswith(target + "."):
                    edges.add(target)
        if name == "numpywren":  # what its __getattr__ loads
            edges |= set(exports.values()) | set(_lazy_table("_INSTALLERS"))
            edges |= {f"numpywren.{m}" for m in _lazy_table("_SUBMODULES")}
        graph[name] = edges
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(10_000)
    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_the_graph_sees_imports_inside_functions_and_lazy_names():
    graph = import_graph()
    assert "numpywren.worker.handler" in graph["numpywren.worker"]  # the lazy handle in a function
    assert "numpywren.matrix" in graph["numpywren"]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_numpywren_has_no_import_circle():
    graph = import_graph()
    for source, target in EXEMPT_EDGES:
        assert target in graph[source], f"exempt edge {source} -> {target} is gone: drop it from EXEMPT_EDGES"
        graph[source].discard(target)
    assert cycles(graph) == []


#: What a worker may load of numpywren: the worker package, the protocol and serialization, the tile
#: codec and tiled-matrix handle, the stores. Never the DAG, matrices, jobs, scheduler or executors.
WORKER_SIDE = {"numpywren", "numpywren.protocol", "numpywren.serialize", "numpywren.tile", "numpywren.tiled",
               "numpywren.zarr_tiles",
               "numpywren.storage", "numpywren.storage.base", "numpywren.storage.local", "numpywren.storage.s3"}


def _loaded_after(code: str) -> set[str]:
    out = subprocess.run([sys.executable, "-c", code + "\nimport json, sys\n"
                          "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] == 'numpywren')))"],
                         capture_output=True, text=True, check=True, cwd=ROOT,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


def test_the_lambda_handler_loads_only_the_worker_side():
    loaded = _loaded_after("import numpywren.worker.lambda_handler")
    driver = {m for m in loaded if not m.startswith("numpywren.worker") and m not in WORKER_SIDE}
    assert not driver, f"the Lambda entry point loads driver modules: {sorted(driver)}"
    assert {"numpywren.worker.handler", "numpywren.worker.ops", "numpywren.protocol"} <= loaded


def test_the_local_worker_process_loads_only_the_worker_side():
    loaded = _loaded_after("import numpywren.worker.process, numpywren.worker.handler")
    driver = {m for m in loaded if not m.startswith("numpywren.worker") and m not in WORKER_SIDE}
    assert not driver, f"the local worker loads driver modules: {sorted(driver)}"


def test_import_numpywren_loads_nothing_until_a_name_is_used():
    assert _loaded_after("import numpywren") == {"numpywren"}
    loaded = _loaded_after("import numpywren\nnumpywren.BigMatrix")
    assert {"numpywren.matrix", "numpywren.elementwise"} <= loaded  # operators come with the matrix


def test_every_public_name_resolves():
    out = subprocess.run([sys.executable, "-c", "import numpywren\n"
                          "missing = [n for n in numpywren.__all__ if getattr(numpywren, n, None) is None]\n"
                          "print(missing)"], capture_output=True, text=True, check=True, cwd=ROOT,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.stdout.strip() == "[]"


def test_no_module_shadows_a_public_name():
    """Importing numpywren/<name>.py binds ``numpywren.<name>`` to the module: a public function named like a
    module would turn into that module once anything loads it (PEP 562's __getattr__ is not asked again)."""
    modules = {p.stem for p in PACKAGE.glob("*.py")} | {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists()}
    import numpywren

    assert not (set(numpywren.__all__) & modules) - set(_lazy_table("_SUBMODULES"))
    code = ("import importlib, pkgutil, numpywren\n"
            "for m in pkgutil.walk_packages(numpywren.__path__, 'numpywren.'):\n"
            "    if not m.name.endswith(('__main__', 'aws_lambda', 'dask', 'lithops', 'deploy')):\n"
            "        importlib.import_module(m.name)\n"
            "bad = [n for n in numpywren.__all__ if type(getattr(numpywren, n)).__name__ == 'module']\n"
            "print(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_a_worker_running_a_tile_task_loads_only_the_worker_side(tmp_path):
    """Not only its imports: a local worker that ran a gemm tile has loaded no driver module (nor boto3)."""
    import numpy as np

    from numpywren import protocol
    from numpywren.dag import Task
    from numpywren.matrix import BigMatrix

    a = np.arange(12.0).reshape(4, 3)
    A = BigMatrix.from_numpy(a, (2, 3), store=str(tmp_path), key="A")
    C = BigMatrix.create((4, 4), (2, 2), store=str(tmp_path), key="C")
    task = Task("C/0_1", "gemm", (C, 0, 1), (((A, 0, 0), (A.T, 0, 1)),), flops=1.0)
    event = protocol.tile_event(A.store.url, "s-imports/0", "0", task.spec("run-imports", 1, 60.0))
    code = ("import json, sys\nfrom numpywren.worker.handler import handle\n"
            "status = handle(json.loads(sys.stdin.read()))\n"
            "print(json.dumps([status['ok'], sorted(m for m in sys.modules if m.split('.')[0] in "
            "('numpywren', 'boto3'))]))")
    out = subprocess.run([sys.executable, "-c", code], input=json.dumps(event), capture_output=True, text=True,
                         check=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    ok, loaded = json.loads(out.stdout.strip().splitlines()[-1])
    assert ok, out.stderr
    np.testing.assert_allclose(C.get_block(0, 1), a[0:2] @ a[2:4].T, rtol=1e-12)
    outside = {m for m in loaded if not m.startswith("numpywren.worker") and m not in WORKER_SIDE}
    assert not outside, f"a worker that ran a tile loaded {sorted(outside)}"
