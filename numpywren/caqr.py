"""QR of a tiled matrix of any shape by CAQR (communication-avoiding QR, Demmel et al. 2012).

For each column panel k (tile column k, from tile row k down), TSQR factors
the panel: every tile is factored on its own (a *leaf*), then the stacked R
factors of groups of ``fan_in`` nodes, up a tree whose root holds R[k, k].
Each tile column j > k to the right is updated by the same tree with the
transposed Householder factors (``Q_panel^T``): leaves first, then each node
on the stacked top rows of its children. After the update, a tile's top rows
live in the output of the highest tree node that touched them and its other
rows in its leaf's output; the next panel's tasks read such a tile as two
*row segments* (see ``numpywren.worker.caqr_tasks``) instead of copying it. Tile row
k of the updated matrix is row block k of R.

Q is accumulated backwards, ``Q = Q_0 (Q_1 (... Q_{K-1} E))`` with E the first
columns of the identity: panel k touches only tile rows and columns >= k, and
E's tiles are never stored (identity or zero blocks made on the worker). The
tree applies top down (root first) with the untransposed factors.

Every step is a tile task (one output tile each); the factor tiles, the
updated panels and the partial Q blocks are scratch of the run. Multi-panel
CAQR needs square tiles (panel k starts at row tile k); one tile column
allows any row tiles.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from blocks.qr import apply_q_flops, qr_flops
from numpywren import jobs
from numpywren.dag import DAG, Task
from numpywren.matrix import BigMatrix

QRResult = np.linalg._linalg.QRResult  # numpy's own named result: (Q, R)


@dataclass(frozen=True)
class Seg:
    """Rows ``lo:hi`` of a tile (written by task ``dep``, None for an input), of a factor tile's R, or of an
    identity/zero block of shape ``shape`` that is never stored."""

    kind: str                 # "tile", "r" or "eye"
    ref: tuple | None = None
    lo: int = 0
    hi: int = 0
    dep: str | None = None
    shape: tuple = ()
    diagonal: bool = False

    def rows(self, lo: int, hi: int) -> "Seg":
        return Seg(self.kind, self.ref, self.lo + lo, self.lo + hi, self.dep, self.shape, self.diagonal)


def _slice(segments: list, lo: int, hi: int) -> list:
    """Rows ``lo:hi`` of the virtual tile made of ``segments``."""
    out, start = [], 0
    for seg in segments:
        n = seg.hi - seg.lo
        a, b = max(lo, start), min(hi, start + n)
        if a < b:
            out.append(seg.rows(a - start, b - start))
        start += n
    return out


def _encode(segments: list, inputs: list) -> tuple[list, list]:
    """Add the segments' tiles to ``inputs``; return the JSON segment list and the tasks they wait for."""
    params, deps = [], []
    for seg in segments:
        if seg.kind == "eye":
            params.append(["eye", *seg.shape, seg.lo, seg.hi, seg.diagonal])
            continue
        if seg.ref not in inputs:
            inputs.append(seg.ref)
        index = inputs.index(seg.ref)
        params.append(["r", index] if seg.kind == "r" else ["tile", index, seg.lo, seg.hi])
        if seg.dep is not None and seg.dep not in deps:
            deps.append(seg.dep)
    return params, deps


@dataclass(eq=False)
class Node:
    """A node of a panel's TSQR tree: ``rows`` stacked rows, ``r = min(rows, panel width)`` rows of R."""

    level: int
    index: int
    rows: int
    r: int
    children: list = field(default_factory=list)
    offsets: list = field(default_factory=list)  # each child's first row in this node's stack
    parent: "Node | None" = None
    first_leaf: int = 0


def panel_tree(leaf_rows: list[int], width: int, fan_in: int) -> list[list[Node]]:
    """The levels of a TSQR tree over leaves of the given heights (the last level holds the root)."""
    levels = [[Node(0, v, h, min(h, width), first_leaf=v) for v, h in enumerate(leaf_rows)]]
    while len(levels[-1]) > 1:
        below, level = levels[-1], []
        for g in range(0, len(below), fan_in):
            group = below[g:g + fan_in]
            offsets = list(np.cumsum([0] + [c.r for c in group[:-1]]))
            rows = sum(c.r for c in group)
            node = Node(len(levels), len(level), rows, min(rows, width), group, [int(o) for o in offsets],
                        first_leaf=group[0].first_leaf)
            for c in group:
                c.parent = node
            level.append(node)
        levels.append(level)
    return levels


class CAQRPlanner:
    """Builds the CAQR DAG of ``A`` (see the module docstring)."""

    def __init__(self, A: BigMatrix, mode: str, out, fan_in: int, workers: int):
        self.A, self.mode, self.fan_in = A, mode, fan_in
        m, n = A.shape
        self.dtype = np.result_type(A.dtype, np.float32)
        self.dag, self.scratch = DAG(), {}
        self.p, self.q = A.grid
        self.panels = min(self.p, self.q)
        self.kdim = min(m, n)
        br, bc = A.tile_shape
        # R's row block k is panel k's R (a tile of R's rows with one tile column); complete: zeros below
        r_tiles = (br, bc) if self.q > 1 else (self.kdim, n)
        R_rows = m if mode == "complete" else self.kdim
        self.R = jobs.output_matrix(None, (R_rows, n), r_tiles, self.dtype, A.store, inputs=(A,))
        self.name = self.R.key
        self.Q = None
        if mode != "r":
            cols = m if mode == "complete" else self.kdim
            self.Q = jobs.output_matrix(out, (m, cols), (br, br), self.dtype, A.store, inputs=(A,))
        self.trees, self.factors = [], {}
        self.workers = workers

    # -- helpers -------------------------------------------------------------------------------
    def _rows(self, i: int) -> int:
        return self.A.block_shape(i, 0)[0]

    def _scratch(self, name: str, nodes: list, extra: int, cols: int, col_tile: int) -> BigMatrix:
        heights = [node.rows + extra for node in nodes]
        return jobs.scratch_matrix(self.scratch, f"caqr-{name}", self.A, (sum(heights), cols),
                                   (heights[0], min(col_tile, cols)), self.dtype)

    def _task(self, tid: str, op: str, output, segments: list, first=(), params=None, deps=(), flops=0.0) -> Task:
        inputs = list(first)
        encoded, seg_deps = _encode(segments, inputs)
        all_deps = list(deps) + [d for d in seg_deps if d not in deps]
        return self.dag.add(Task(f"{self.name}/{tid}", op, output, tuple(inputs),
                                 {"segments": encoded, **(params or {})}, deps=tuple(all_deps), flops=flops))

    # -- the plan --------------------------------------------------------------------------------
    def build(self) -> jobs.Plan:
        A = self.A
        X = {(i, j): [Seg("tile", (A, i, j), 0, self._rows(i))] for i in range(self.p) for j in range(self.q)}
        for k in range(self.panels):
            X = self._panel(k, X)
        for i in range(self.R.grid[0]):
            for j in range(min(i, self.R.grid[1])):
                self.dag.add(Task(f"{self.name}/zero{i}_{j}", "zeros", (self.R, i, j)))
        outputs = [jobs.Output(self.R, "caqr_r", (A,), {"mode": self.mode, "fan_in": self.fan_in})]
        if self.Q is not None:
            self._build_q()
            outputs.append(jobs.Output(self.Q, "caqr_q", (A,), {"mode": self.mode, "fan_in": self.fan_in}))
        m, n = A.shape
        return jobs.Plan(self.dag, outputs, self.scratch, f"caqr {m}x{n} ({self.mode})", self.workers)

    def _panel(self, k: int, X: dict) -> dict:
        """Factor panel k, write R's row block k, return the updated trailing tiles."""
        width = self.A.block_shape(0, k)[1]
        levels = panel_tree([self._rows(i) for i in range(k, self.p)], width, self.fan_in)
        self.trees.append(levels)
        factors = {}  # node -> (task id, factor ref)
        for l, nodes in enumerate(levels):
            F = self._scratch(f"f{k}-{l}", nodes, 1, width, width)
            for node in nodes:
                if l == 0:
                    segments = X[(k + node.index, k)]
                else:
                    segments = [Seg("r", factors[c][1], dep=factors[c][0]) for c in node.children]
                task = self._task(f"f{k}/{l}/{node.index}", "caqr_factor", (F, node.index, 0), segments,
                                  flops=qr_flops(node.rows, width))
                factors[node] = (task.id, task.output)
        self.factors[k] = factors
        root = levels[-1][0]
        self._take_r(k, k, [Seg("r", factors[root][1], 0, root.r, factors[root][0])])
        updated = {}
        for j in range(k + 1, self.q):
            cols = self.A.block_shape(0, j)[1]
            outs = {}  # node -> Seg of its whole output
            for l, nodes in enumerate(levels):
                C = self._scratch(f"c{k}-{l}", nodes, 0, self.A.shape[1], self.A.tile_shape[1])
                for node in nodes:
                    if l == 0:
                        segments = X[(k + node.index, j)]
                    else:
                        segments = [outs[c].rows(0, c.r) for c in node.children]
                    fid, fref = factors[node]
                    task = self._task(f"c{k}/{l}/{node.index}/{j}", "caqr_apply", (C, node.index, j), segments,
                                      first=(fref,), params={"transpose": True}, deps=(fid,),
                                      flops=apply_q_flops(node.rows, node.r, cols))
                    outs[node] = Seg("tile", task.output, 0, node.rows, task.id)
            for leaf in levels[0]:
                top = self._final_top(leaf, outs)
                rest = [outs[leaf].rows(leaf.r, leaf.rows)] if leaf.rows > leaf.r else []
                if leaf.index == 0:
                    self._take_r(k, j, top + rest)
                else:
                    updated[(k + leaf.index, j)] = top + rest
        return updated

    def _take_r(self, i: int, j: int, segments: list) -> None:
        """R's tile (i, j) from the rows of a panel's update (padded with zero rows in mode "complete")."""
        rows, cols = self.R.block_shape(i, j)
        have = sum(s.hi - s.lo for s in segments)
        if have < rows:
            segments = segments + [Seg("eye", lo=0, hi=rows - have, shape=(rows - have, cols))]
        self._task(f"R{i}_{j}", "caqr_take", (self.R, i, j), segments)

    @staticmethod
    def _final_top(leaf: Node, outs: dict) -> list:
        """Where a leaf's top rows are after the panel's update: in the output of the highest node reaching them."""
        node = leaf
        while node.parent is not None and node.parent.children[0] is node:
            node = node.parent
        if node.parent is None:  # the root chain: the root's top rows
            return [outs[node].rows(0, node.r)]
        parent = node.parent
        offset = parent.offsets[parent.children.index(node)]
        return [outs[parent].rows(offset, offset + node.r)]

    def _build_q(self) -> None:
        """Q = Q_0 (Q_1 (... E)), panel by panel from the last (see the module docstring)."""
        Q = self.Q
        V = {}  # (i, j) -> segments of the partial product, where it differs from E

        def source(i, j):
            if (i, j) in V:
                return V[(i, j)]
            h, w = Q.block_shape(i, j)
            return [Seg("eye", lo=0, hi=h, shape=(h, w), diagonal=i == j)]

        for k in range(self.panels - 1, -1, -1):
            levels, factors = self.trees[k], self.factors[k]
            new = {}
            for j in range(k, Q.grid[1]):
                cols = Q.block_shape(0, j)[1]
                after = {}  # node -> Seg: its top rows after its parent applied
                for l in range(len(levels) - 1, -1, -1):
                    target = (Q if k == 0 and l == 0 else
                              self._scratch(f"b{k}-{l}", levels[l], 0, Q.shape[1], Q.tile_shape[1]))
                    for node in levels[l]:
                        if l == 0:
                            segments = (source(k + node.index, j) if node.parent is None else
                                        [after[node]] + _slice(source(k + node.index, j), node.r, node.rows))
                        else:
                            segments = []
                            for c in node.children:
                                if c is node.children[0] and node.parent is not None:
                                    segments.append(after[node])
                                else:
                                    segments += _slice(source(k + c.first_leaf, j), 0, c.r)
                        fid, fref = factors[node]
                        task = self._task(f"b{k}/{l}/{node.index}/{j}", "caqr_apply", (target, node.index, j),
                                          segments, first=(fref,), params={"transpose": False}, deps=(fid,),
                                          flops=apply_q_flops(node.rows, node.r, cols))
                        for c, offset in zip(node.children, node.offsets):
                            after[c] = Seg("tile", task.output, offset, offset + c.r, task.id)
                        if l == 0:
                            new[(k + node.index, j)] = [Seg("tile", task.output, 0, node.rows, task.id)]
            V = new


def plan(A: BigMatrix, mode: str, out, fan_in: int, workers: int) -> jobs.Plan:
    """The CAQR plan of A; its outputs are R and (modes "reduced", "complete") Q."""
    return CAQRPlanner(A, mode, out, fan_in, workers).build()


def qr(A: BigMatrix, mode: str = "reduced", executor=None, *, out=None, fan_in: int = 4,
       check_finite: bool = False, compute: bool = True, **options):
    """CAQR of a BigMatrix of any shape, as ``numpy.linalg.qr`` (called by ``numpywren.qr``).

    Returns ``QRResult(Q, R)`` with both BigMatrix (Q at ``out``), or R alone
    for ``mode="r"``; ``compute=False`` returns the plan.
    """
    check(A, mode)
    executor, workers = jobs.executor_and_workers(executor, compute, options)
    if options.pop("resume", False):
        raise ValueError("resume=True is not supported by qr (rerun instead)")
    p = plan(A, mode, out, fan_in, workers)
    result = jobs.run_or_plan(p, executor, [A], check_finite, compute, options)
    if not compute:
        return result
    R = p.outputs[0].matrix
    if mode == "r":
        return R
    return QRResult(p.outputs[1].matrix, R)


def check(A: BigMatrix, mode: str) -> None:
    """Refuse what CAQR cannot factor, naming why, before any task runs."""
    if not isinstance(A, BigMatrix):
        raise TypeError(f"qr takes a BigMatrix, got {type(A).__name__} (store it with BigMatrix.from_numpy)")
    if mode not in ("reduced", "complete", "r"):
        raise ValueError(f"qr: mode must be 'reduced', 'complete' or 'r', got {mode!r}")
    if not np.issubdtype(A.dtype, np.floating):
        raise TypeError(f"qr: A must hold float32 or float64 values, got {A.dtype}")
    br, bc = A.tile_shape
    if A.grid[1] > 1 and br != bc:
        raise ValueError(f"qr: A's tiles are {br}x{bc}; CAQR over several column tiles needs square tiles "
                         f"(store A again with tile_shape=({bc}, {bc}))")
    jobs.check_complete(A)
