"""QR of a tiled matrix of any shape by CAQR (communication-avoiding QR, Demmel et al. 2012).

For each column panel k (tile column k, from tile row k down), TSQR factors
the panel: every tile is factored on its own (a *leaf*), then the stacked R
factors of groups of ``fan_in`` nodes, up a tree whose root holds R[k, k].
Each tile column j > k to the right is updated by the same tree with the
transposed Householder factors (``Q_panel^T``; ``Q_panel^H`` for complex A, whose reflectors have complex tau): leaves first, then each node
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

from blocks.qr import QRT_BLOCK, apply_q_flops, apply_ts_flops, qr_flops, ts_flops
from numpywren import empty_shapes, jobs
from numpywren.dag import DAG, Task
from numpywren.matrix import BigMatrix

QRResult = np.linalg._linalg.QRResult  # numpy's own named result: (Q, R)


@dataclass(frozen=True)
class Seg:
    """Rows ``lo:hi`` of a tile (written by task ``dep``, None for an input), of a factor tile's R, or of an
    identity/zero block of shape ``shape`` that is never stored."""

    kind: str                 # "tile", "tilet" (transposed), "r", "sym" (lower triangle, mirrored) or "eye"
    ref: tuple | None = None
    lo: int = 0
    hi: int = 0
    dep: str | None = None
    shape: tuple = ()
    diagonal: bool = False
    cols: tuple = ()          # a column range of a "tile" (default all)

    def rows(self, lo: int, hi: int) -> "Seg":
        return Seg(self.kind, self.ref, self.lo + lo, self.lo + hi, self.dep, self.shape, self.diagonal, self.cols)


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
        if seg.kind == "r":
            params.append(["r", index, seg.hi])
        else:
            params.append([seg.kind, index, seg.lo, seg.hi, *seg.cols])
        if seg.dep is not None and seg.dep not in deps:
            deps.append(seg.dep)
    return params, deps


def encode_tiles(tile_segments: list) -> tuple[list, list, list]:
    """Several tiles' segment lists at once (a band task's input): (inputs, tasks waited for, JSON tiles)."""
    inputs, deps, tiles = [], [], []
    for segments in tile_segments:
        encoded, seg_deps = _encode(segments, inputs)
        tiles.append(encoded)
        deps += [d for d in seg_deps if d not in deps]
    return inputs, deps, tiles


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


@dataclass(eq=False)
class Panel:
    """A factored panel: its tree's levels and, per node, (task id, factor tile ref)."""

    levels: list
    factors: dict

    @property
    def root(self) -> Node:
        return self.levels[-1][0]

    def r(self) -> list:
        """The segment of the panel's R (the root's)."""
        tid, ref = self.factors[self.root]
        return [Seg("r", ref, 0, self.root.r, tid)]


@dataclass(eq=False)
class Chain:
    """A panel factored by a flat tree of TS kernels (PLASMA's tiled QR): the first tile by ``geqrt`` (the
    *head*), then each tile below stacked under the running R by ``tpqrt`` (the triangle's zeros cost
    nothing). Each step below the head takes ``groups[i]``, a few consecutive tiles stacked (one tpqrt on a
    taller block: the flops of as many steps, fewer bytes through the store). ``rows[i]`` is step ``i``'s
    height; ``factors[i]`` its (task id, factor tile ref); the last one holds R."""

    rows: list
    width: int
    factors: list
    groups: list = field(default_factory=list)   # tile indices of each step (the head's: [0])
    tile_rows: list = field(default_factory=list)

    def stack(self, tiles: list) -> list:
        """Per-tile virtual tiles -> one per step (its tiles' segments, top to bottom)."""
        return [[seg for i in group for seg in tiles[i]] for group in self.groups]

    def split(self, stacked: list) -> list:
        """Per-step virtual tiles -> one per tile."""
        tiles = []
        for group, segments in zip(self.groups, stacked):
            start = 0
            for i in group:
                tiles.append(_slice(segments, start, start + self.tile_rows[i]))
                start += self.tile_rows[i]
        return tiles

    def r(self) -> list:
        tid, ref = self.factors[-1]
        return [Seg("r", ref, 0, self.width if len(self.rows) > 1 else min(self.rows[0], self.width), tid)]


#: tiles per TS step of a flat chain (below the head). 1 is PLASMA's TS chain (the shortest critical path);
#: k > 1 stacks k tiles per tpqrt (same flops, 1/k of the store round trips of the running top rows). At
#: N=8192, tile 1024, R only: 1, 2, 4 write 3.7, 3.1, 2.7 GB in 268, 194, 156 tasks; side by side (load 3.2-3.7,
#: benchmarks/README.md "CAQR without copies") 2 took 12.0 s and 20 CPU-s where 1 took 13.2-14.5 s and 23 CPU-s,
#: and 4 took 18 s (its critical path: one panel's chain is 2 tall tasks with 4x the flops each).
CHAIN_TILES = 2


def _wy_block(rows: int, cols: int) -> int:
    """The T factor's rows in a factor tile of ``blocks.qr.factor_wy``/``factor_ts`` (their ``nb``)."""
    return max(1, min(QRT_BLOCK, rows, cols))


class Trees:
    """The tile tasks of TSQR trees: factor a panel, apply its Q^T (update) or Q (accumulate) to a tile column.

    A *virtual tile* is a list of row segments (:class:`Seg`); one per leaf of a panel. Intermediate
    results go to scratch matrices named ``<tag>-<level>``, one tile per tree node and tile column.
    With ``flat``, a panel whose first tile is at least as tall as the panel is wide is factored by a
    :class:`Chain` of compact-WY TS kernels instead (fewer flops, faster kernels: see ``docs/guide/qr.md``).
    """

    def __init__(self, like: BigMatrix, dtype, name: str, fan_in: int, flat: bool = False,
                 chain_tiles: int | None = None):
        self.like, self.dtype, self.name, self.fan_in, self.flat = like, dtype, name, fan_in, flat
        self.chain_tiles = CHAIN_TILES if chain_tiles is None else chain_tiles
        self.dag, self.scratch = DAG(), {}

    def task(self, tid: str, op: str, output, segments: list, first=(), params=None, deps=(), flops=0.0) -> Task:
        inputs = list(first)
        encoded, seg_deps = _encode(segments, inputs)
        all_deps = list(deps) + [d for d in seg_deps if d not in deps]
        return self.dag.add(Task(f"{self.name}/{tid}", op, output, tuple(inputs),
                                 {"segments": encoded, **(params or {})}, deps=tuple(all_deps), flops=flops))

    def take(self, tid: str, output, segments: list) -> Task:
        """Write a virtual tile into ``output`` (padded with zero rows to the tile's height)."""
        matrix, i, j = output
        rows, cols = matrix.block_shape(i, j)
        have = sum(s.hi - s.lo for s in segments)
        if have < rows:
            segments = segments + [Seg("eye", lo=0, hi=rows - have, shape=(rows - have, cols))]
        return self.task(tid, "caqr_take", output, segments)

    def _scratch(self, name: str, nodes: list, extra: int, cols: int, col_tile: int) -> BigMatrix:
        return self._scratch_rows(name, [node.rows + extra for node in nodes], cols, col_tile)

    def _scratch_rows(self, name: str, heights: list, cols: int, col_tile: int) -> BigMatrix:
        return jobs.scratch_matrix(self.scratch, f"caqr-{name}", self.like, (sum(heights), cols),
                                   (heights[0], min(col_tile, cols)), self.dtype)

    def factor(self, tag: str, leaves: list, leaf_rows: list, width: int) -> "Panel | Chain":
        """Factor the panel whose row blocks are the virtual tiles ``leaves``."""
        if self.flat and (len(leaf_rows) == 1 or leaf_rows[0] >= width):
            g = self.chain_tiles
            groups = [[0]] + [list(range(i, min(i + g, len(leaf_rows)))) for i in range(1, len(leaf_rows), g)]
            chain = Chain(leaf_rows, width, [], groups, list(leaf_rows))
            chain = self._factor_chain(tag, chain.stack(leaves), [sum(leaf_rows[i] for i in grp) for grp in groups],
                                       width)
            chain.groups, chain.tile_rows = groups, list(leaf_rows)
            return chain
        levels = panel_tree(leaf_rows, width, self.fan_in)
        factors = {}
        for l, nodes in enumerate(levels):
            F = self._scratch(f"{tag}f-{l}", nodes, 1, width, width)
            for node in nodes:
                if l == 0:
                    segments = leaves[node.index]
                else:
                    segments = [Seg("r", factors[c][1], 0, c.r, factors[c][0]) for c in node.children]
                task = self.task(f"{tag}f/{l}/{node.index}", "caqr_factor", (F, node.index, 0), segments,
                                 flops=qr_flops(node.rows, width))
                factors[node] = (task.id, task.output)
        return Panel(levels, factors)

    def update(self, tag: str, panel: Panel, leaves: list, j: int, cols: int, shape: tuple) -> list:
        """Q^T applied to tile column j (``cols`` wide; scratch of ``shape`` = (columns, column tile)):
        the updated virtual tiles, one per leaf. The first leaf's rows are the root's top rows."""
        if isinstance(panel, Chain):
            return panel.split(self._update_chain(tag, panel, panel.stack(leaves), j, cols, shape))
        outs = {}  # node -> Seg of its whole output
        for l, nodes in enumerate(panel.levels):
            C = self._scratch(f"{tag}c-{l}", nodes, 0, *shape)
            for node in nodes:
                segments = leaves[node.index] if l == 0 else [outs[c].rows(0, c.r) for c in node.children]
                fid, fref = panel.factors[node]
                task = self.task(f"{tag}c/{l}/{node.index}/{j}", "caqr_apply", (C, node.index, j), segments,
                                 first=(fref,), params={"transpose": True}, deps=(fid,),
                                 flops=apply_q_flops(node.rows, node.r, cols))
                outs[node] = Seg("tile", task.output, 0, node.rows, task.id)
        updated = []
        for leaf in panel.levels[0]:
            rest = [outs[leaf].rows(leaf.r, leaf.rows)] if leaf.rows > leaf.r else []
            updated.append(_final_top(leaf, outs) + rest)
        return updated

    def accumulate(self, tag: str, panel: Panel, sources: list, j: int, cols: int, shape: tuple,
                   target: BigMatrix | None = None, offset: int = 0) -> list:
        """Q applied to tile column j of the virtual tiles ``sources`` (one per leaf), root first; the leaves
        write to ``target`` (its block (offset + leaf, j)) if given, else to scratch. Returns the new tiles."""
        if isinstance(panel, Chain):
            new = panel.split(self._accumulate_chain(tag, panel, panel.stack(sources), j, cols, shape, target,
                                                     offset))
            if target is not None:   # the head wrote its tile; the tiles below reach the target by a copy
                for i in range(1, len(new)):
                    copy = self.take(f"{tag}b/q/{i}/{j}", (target, offset + i, j), new[i])
                    new[i] = [Seg("tile", copy.output, 0, panel.tile_rows[i], copy.id)]
            return new
        after = {}  # node -> Seg: its top rows after its parent applied
        levels = panel.levels
        new = []
        for l in range(len(levels) - 1, -1, -1):
            out = target if target is not None and l == 0 else self._scratch(f"{tag}b-{l}", levels[l], 0, *shape)
            for node in levels[l]:
                # the node's stack: its top rows as its parent left them, the rest as the sources hold them
                top = node.r if node.parent is not None else 0
                segments = ([after[node]] if top else []) + _stack(node, top, node.rows, sources)
                fid, fref = panel.factors[node]
                row = node.index + (offset if out is target else 0)
                task = self.task(f"{tag}b/{l}/{node.index}/{j}", "caqr_apply", (out, row, j), segments,
                                 first=(fref,), params={"transpose": False}, deps=(fid,),
                                 flops=apply_q_flops(node.rows, node.r, cols))
                for c, start in zip(node.children, node.offsets):
                    after[c] = Seg("tile", task.output, start, start + c.r, task.id)
                if l == 0:
                    new.append([Seg("tile", task.output, 0, node.rows, task.id)])
        return new

    # -- flat TS chains (Chain) -----------------------------------------------------------------------------------
    def _factor_chain(self, tag: str, leaves: list, rows: list, width: int) -> Chain:
        w, factors = width, []
        H = self._scratch_rows(f"{tag}f-h", [rows[0] + _wy_block(rows[0], w)], w, w)
        head = self.task(f"{tag}f/0/0", "caqr_factor", (H, 0, 0), leaves[0], params={"kernel": "wy"},
                         flops=qr_flops(rows[0], w))
        factors.append((head.id, head.output))
        if len(rows) > 1:
            T = self._scratch_rows(f"{tag}f-t", [w + h + _wy_block(w, w) for h in rows[1:]], w, w)
            for i in range(1, len(rows)):
                tid, ref = factors[-1]
                task = self.task(f"{tag}f/1/{i - 1}", "caqr_factor", (T, i - 1, 0), [Seg("r", ref, 0, w, tid)]
                                 + leaves[i], params={"kernel": "ts"}, flops=ts_flops(w, rows[i]))
                factors.append((task.id, task.output))
        return Chain(list(rows), w, factors)

    def _update_chain(self, tag: str, chain: Chain, leaves: list, j: int, cols: int, shape: tuple) -> list:
        """Q^H of a chain on tile column j (``leaves``: one virtual tile per step): the head's gemqrt, then one
        tpmqrt per step below on the running top rows and its block. The head's top rows end in the last
        step's output."""
        rows, w = chain.rows, chain.width
        h0, (fid, fref) = rows[0], chain.factors[0]
        H = self._scratch_rows(f"{tag}c-h", [h0], *shape)
        head = self.task(f"{tag}c/0/0/{j}", "caqr_apply", (H, 0, j), leaves[0], first=(fref,),
                         params={"transpose": True, "kernel": "wy"}, deps=(fid,),
                         flops=apply_q_flops(h0, min(h0, w), cols))
        if len(rows) == 1:
            return [[Seg("tile", head.output, 0, h0, head.id)]]
        rest = [Seg("tile", head.output, w, h0, head.id)] if h0 > w else []
        top = [Seg("tile", head.output, 0, w, head.id)]
        C = self._scratch_rows(f"{tag}c-t", [w + h for h in rows[1:]], *shape)
        below = []
        for i in range(1, len(rows)):
            fid, fref = chain.factors[i]
            task = self.task(f"{tag}c/1/{i - 1}/{j}", "caqr_apply", (C, i - 1, j), top + leaves[i], first=(fref,),
                             params={"transpose": True, "kernel": "ts"}, deps=(fid,),
                             flops=apply_ts_flops(w, rows[i], cols))
            top = [Seg("tile", task.output, 0, w, task.id)]
            below.append([Seg("tile", task.output, w, w + rows[i], task.id)])
        return [top + rest] + below

    def _accumulate_chain(self, tag: str, chain: Chain, sources: list, j: int, cols: int, shape: tuple,
                          target: BigMatrix | None, offset: int) -> list:
        """Q of a chain on tile column j of ``sources`` (one per step), last step first (each tpmqrt on the
        running top rows and its block), the head's gemqrt last, into ``target`` if given."""
        rows, w = chain.rows, chain.width
        h0, new = rows[0], [None] * len(rows)
        top = _slice(sources[0], 0, w) if len(rows) > 1 else []
        if len(rows) > 1:
            C = self._scratch_rows(f"{tag}b-t", [w + h for h in rows[1:]], *shape)
        for i in range(len(rows) - 1, 0, -1):
            fid, fref = chain.factors[i]
            task = self.task(f"{tag}b/1/{i - 1}/{j}", "caqr_apply", (C, i - 1, j), top + sources[i], first=(fref,),
                             params={"transpose": False, "kernel": "ts"}, deps=(fid,),
                             flops=apply_ts_flops(w, rows[i], cols))
            top = [Seg("tile", task.output, 0, w, task.id)]
            new[i] = [Seg("tile", task.output, w, w + rows[i], task.id)]
        head_rows = top + _slice(sources[0], w, h0) if len(rows) > 1 else sources[0]
        out = target if target is not None else self._scratch_rows(f"{tag}b-h", [h0], *shape)
        fid, fref = chain.factors[0]
        task = self.task(f"{tag}b/0/0/{j}", "caqr_apply", (out, offset if target is not None else 0, j), head_rows,
                         first=(fref,), params={"transpose": False, "kernel": "wy"}, deps=(fid,),
                         flops=apply_q_flops(h0, min(h0, w), cols))
        new[0] = [Seg("tile", task.output, 0, h0, task.id)]
        return new


def _stack(node: Node, lo: int, hi: int, sources: list) -> list:
    """Rows ``lo:hi`` of ``node``'s stack (a leaf's rows; an inner node's: its children's top rows, in turn) as
    segments of the leaves' virtual tiles ``sources``. A child's top rows may span several leaves when leaves
    are shorter than the panel is wide (a tile column of 1 x 2 tiles)."""
    if not node.children:
        return _slice(sources[node.index], lo, hi)
    segments = []
    for child, start in zip(node.children, node.offsets):
        a, b = max(lo, start), min(hi, start + child.r)
        if a < b:
            segments += _stack(child, a - start, b - start, sources)
    return segments


def _final_top(leaf: Node, outs: dict) -> list:
    """Where a leaf's top rows are after a panel's update: in the output of the highest node reaching them."""
    node = leaf
    while node.parent is not None and node.parent.children[0] is node:
        node = node.parent
    if node.parent is None:  # the root chain: the root's top rows
        return [outs[node].rows(0, node.r)]
    parent = node.parent
    offset = parent.offsets[parent.children.index(node)]
    return [outs[parent].rows(offset, offset + node.r)]


def identity_tile(M: BigMatrix, i: int, j: int) -> list:
    """Block (i, j) of the identity matrix shaped like M (square tiles), as a never-stored segment."""
    h, w = M.block_shape(i, j)
    return [Seg("eye", lo=0, hi=h, shape=(h, w), diagonal=i == j)]


class CAQRPlanner:
    """Builds the CAQR DAG of ``A`` (see the module docstring)."""

    def __init__(self, A: BigMatrix, mode: str, out, fan_in: int, workers: int, tree: str = "flat"):
        self.A, self.mode, self.fan_in, self.workers, self.tree = A, mode, fan_in, workers, tree
        m, n = A.shape
        dtype = np.result_type(A.dtype, np.float32)
        self.p, self.q = A.grid
        self.panels = min(self.p, self.q)
        kdim = min(m, n)
        br, bc = A.tile_shape
        # R's row block k is panel k's R (one tile row when A has one tile column); complete: zeros below
        r_tiles = (br, bc) if self.q > 1 else (kdim, n)
        self.R = jobs.output_matrix(None, (m if mode == "complete" else kdim, n), r_tiles, dtype, A.store,
                                    inputs=(A,))
        self.Q = None
        if mode != "r":
            cols = m if mode == "complete" else kdim
            self.Q = jobs.output_matrix(out, (m, cols), (br, br), dtype, A.store, inputs=(A,))
        self.trees = Trees(A, dtype, self.R.key, fan_in, flat=tree == "flat")

    def build(self) -> jobs.Plan:
        A, trees = self.A, self.trees
        X = {(i, j): [Seg("tile", (A, i, j), 0, A.block_shape(i, j)[0])] for i in range(self.p)
             for j in range(self.q)}
        panels = []
        for k in range(self.panels):
            rows = [A.block_shape(i, 0)[0] for i in range(k, self.p)]
            panel = trees.factor(f"k{k}", [X[(i, k)] for i in range(k, self.p)], rows, A.block_shape(0, k)[1])
            panels.append(panel)
            trees.take(f"R{k}_{k}", (self.R, k, k), panel.r())
            for j in range(k + 1, self.q):
                updated = trees.update(f"k{k}", panel, [X[(i, j)] for i in range(k, self.p)], j,
                                       A.block_shape(0, j)[1], (A.shape[1], A.tile_shape[1]))
                trees.take(f"R{k}_{j}", (self.R, k, j), updated[0])
                for i, tile in enumerate(updated[1:], k + 1):
                    X[(i, j)] = tile
            self._after_panel(k, panel)
        for i in range(self.R.grid[0]):
            for j in range(min(i, self.R.grid[1])):
                trees.dag.add(Task(f"{self.R.key}/zero{i}_{j}", "zeros", (self.R, i, j)))
        params = {"mode": self.mode, "fan_in": self.fan_in, "tree": self.tree}
        outputs = [jobs.Output(self.R, "caqr_r", (A,), params)]
        if self.Q is not None:
            self._build_q(panels)
            outputs.append(jobs.Output(self.Q, "caqr_q", (A,), params))
        outputs += self._more_outputs(panels)
        m, n = A.shape
        return jobs.Plan(trees.dag, outputs, trees.scratch, f"caqr {m}x{n} ({self.mode})", self.workers)

    def _after_panel(self, k: int, panel: Panel) -> None:
        """What else panel k's tree is applied to (nothing here; see :class:`MultiplyPlanner`)."""

    def _more_outputs(self, panels: list) -> list:
        return []

    def _build_q(self, panels: list) -> None:
        """Q = Q_0 (Q_1 (... E)), panel by panel from the last (see the module docstring)."""
        Q = self.Q
        V = {}  # (i, j) -> the partial product's tile, where it differs from E
        for k in range(self.panels - 1, -1, -1):
            new = {}
            for j in range(k, Q.grid[1]):
                sources = [V.get((i, j)) or identity_tile(Q, i, j) for i in range(k, self.p)]
                tiles = self.trees.accumulate(f"k{k}", panels[k], sources, j, Q.block_shape(0, j)[1],
                                              (Q.shape[1], Q.tile_shape[1]), Q if k == 0 else None)
                for i, tile in enumerate(tiles, k):
                    new[(i, j)] = tile
            V = new


class MultiplyPlanner(CAQRPlanner):
    """CAQR of A (R only) that applies Q to C without forming Q (``qr_multiply``): ``Q^T C^T`` panel by panel
    with each panel's tree as it is factored (mode "right": ``C Q = (Q^T C^T)^T``), or ``Q C`` backwards
    from C padded with zero rows (mode "left"), as Q is accumulated from the identity."""

    def __init__(self, A: BigMatrix, C: BigMatrix, mode: str, out, fan_in: int, workers: int, tree: str = "flat"):
        super().__init__(A, "r", None, fan_in, workers, tree)
        self.C, self.side = C, mode
        dtype = np.result_type(A.dtype, C.dtype, np.float32)
        if mode == "right":   # Y = Q^T C^T, K x P, row blocks as R's
            self.B = C.T
            self.Y = jobs.output_matrix(out, (self.R.shape[0], C.shape[0]), (self.R.tile_shape[0], C.tile_shape[0]),
                                        dtype, A.store, inputs=(A, C))
            self.XB = {(i, j): [Seg("tile", (self.B, i, j), 0, self.B.block_shape(i, j)[0])]
                       for i in range(self.p) for j in range(self.B.grid[1])}
        else:                 # Y = Q C, M x P, A's row blocks
            self.Y = jobs.output_matrix(out, (A.shape[0], C.shape[1]), (A.tile_shape[0], C.tile_shape[1]), dtype,
                                        A.store, inputs=(A, C))

    def _after_panel(self, k: int, panel: Panel) -> None:
        if self.side != "right":
            return
        B, XB, rows = self.B, self.XB, range(k, self.p)
        for j in range(B.grid[1]):
            updated = self.trees.update(f"m{k}", panel, [XB[(i, j)] for i in rows], j, B.block_shape(0, j)[1],
                                        (B.shape[1], B.tile_shape[1]))
            self.trees.take(f"Y{k}_{j}", (self.Y, k, j), _slice(updated[0], 0, self.Y.block_shape(k, j)[0]))
            for i, tile in enumerate(updated[1:], k + 1):
                XB[(i, j)] = tile

    def _more_outputs(self, panels: list) -> list:
        if self.side == "left":
            self._multiply_left(panels)
        return [jobs.Output(self.Y, "qr_multiply", (self.A, self.C), {"mode": self.side, "fan_in": self.fan_in,
                                                                        "tree": self.tree})]

    def _multiply_left(self, panels: list) -> None:
        C, Y, A = self.C, self.Y, self.A
        V = {}  # (i, j) -> the partial product's tile, where it differs from C padded with zero rows

        def source(i, j):
            h, w = A.block_shape(i, 0)[0], C.block_shape(0, j)[1]
            segments = [Seg("tile", (C, i, j), 0, C.block_shape(i, j)[0])] if i < C.grid[0] else []
            have = sum(seg.hi - seg.lo for seg in segments)
            return segments + ([Seg("eye", lo=0, hi=h - have, shape=(h - have, w))] if have < h else [])

        for k in range(self.panels - 1, -1, -1):
            new = {}
            for j in range(C.grid[1]):
                sources = [V.get((i, j)) or source(i, j) for i in range(k, self.p)]
                tiles = self.trees.accumulate(f"m{k}", panels[k], sources, j, C.block_shape(0, j)[1],
                                              (C.shape[1], C.tile_shape[1]), Y if k == 0 else None)
                for i, tile in enumerate(tiles, k):
                    new[(i, j)] = tile
            V = new


def qr_multiply(A: BigMatrix, c: BigMatrix, mode: str = "right", executor=None, *, out=None, fan_in: int = 4,
                tree: str = "flat", check_finite: bool = False, compute: bool = True, **options):
    """QR of A and a product with its Q, without forming Q, as ``scipy.linalg.qr_multiply``: ``(CQ, R)``.

    ``mode="left"``: ``Q @ c`` (c is ``K x P``, K = min(A.shape)); ``mode="right"``: ``c @ Q`` (c is
    ``P x M``). Q is the reduced one (M x K). ``Q.T @ B`` is ``qr_multiply(A, B.T)[0].T``. Q's Householder
    trees are applied to c's tiles as A is factored (right) or in place of the identity that would give Q
    (left): no M x K matrix is written. c's tiles along the product's inner dimension must be A's row tiles.
    Returns BigMatrix CQ (at ``out``; a conjugate-transposed view for mode "right") and R; ``compute=False`` the plan.
    """
    check(A, "r", tree)
    if not isinstance(c, BigMatrix):
        raise TypeError(f"qr_multiply: c must be a BigMatrix, got {type(c).__name__}")
    if mode not in ("left", "right"):
        raise ValueError(f"qr_multiply: mode must be 'left' or 'right', got {mode!r}")
    kdim, br = min(A.shape), A.tile_shape[0]
    inner, tiles, want = (c.shape[0], c.tile_shape[0], kdim) if mode == "left" else (c.shape[1], c.tile_shape[1],
                                                                                        A.shape[0])
    if inner != want:
        raise ValueError(f"qr_multiply(mode={mode!r}): c has shape {c.shape}; its "
                         f"{'rows' if mode == 'left' else 'columns'} must number {want}")
    if A.size == 0:   # Q is m x 0: the products are empty or zeros (numpywren.empty_shapes)
        return empty_shapes.qr_multiply(A, c, mode, out, jobs.run_options(executor, compute=compute, **options))
    if tiles != br and not inner == tiles <= br:   # one tile along the product that fits A's first row tile
        raise ValueError(f"qr_multiply(mode={mode!r}): c's tiles are {c.tile_shape}; along the product they must "
                         f"be A's row tiles ({br})")
    if not np.issubdtype(c.dtype, np.floating):
        raise TypeError(f"qr_multiply: c must hold float32 or float64 values, got {c.dtype}")
    if np.finfo(c.dtype).precision > np.finfo(A.dtype).precision:   # scipy would factor A in c's precision
        raise TypeError(f"qr_multiply: c is {c.dtype} but A is {A.dtype}: Q would have {A.dtype}'s accuracy "
                        f"under {c.dtype}'s name; store A in double precision or c as float32")
    jobs.check_complete(c)
    opts = jobs.run_options(executor, compute=compute, check_finite=check_finite, **options)
    if opts.run.pop("resume", False):
        raise ValueError("resume=True is not supported by qr_multiply (rerun instead)")
    p = MultiplyPlanner(A, c, mode, out, fan_in, opts.workers, tree).build()
    R, Y = p.outputs[0].matrix, p.outputs[1].matrix
    # "right": the trees apply Q^H to c^T (CAQR's trailing update), so c Q = (Q^H c^T)^H for the real c taken
    p.finish = lambda: (Y.H if mode == "right" else Y, R)
    return opts.submit(p, inputs=[A, c])


def plan(A: BigMatrix, mode: str, out, fan_in: int, workers: int, tree: str = "flat") -> jobs.Plan:
    """The CAQR plan of A; its outputs are R and (modes "reduced", "complete") Q."""
    return CAQRPlanner(A, mode, out, fan_in, workers, tree).build()


#: panel tree shapes: "flat" (a TS chain per panel, PLASMA's tiled QR) or "tsqr" (a TSQR tree of ``fan_in``)
TREES = ("flat", "tsqr")


def qr(A: BigMatrix, mode: str = "reduced", executor=None, *, out=None, fan_in: int = 4, tree: str = "flat",
       check_finite: bool = False, compute: bool = True, **options):
    """CAQR of a BigMatrix of any shape, as ``numpy.linalg.qr`` (called by ``numpywren.qr``).

    ``tree="flat"`` factors each panel by a chain of compact-WY TS kernels (geqrt on the diagonal tile,
    tpqrt for each tile below: about numpy's 4/3 n^3 flops); ``"tsqr"`` by a TSQR tree of ``fan_in``
    (geqrf of stacked R's: more flops, a shorter critical path).
    Returns ``QRResult(Q, R)`` with both BigMatrix (Q at ``out``), or R alone
    for ``mode="r"``; ``compute=False`` returns the plan.
    """
    check(A, mode, tree)
    opts = jobs.run_options(executor, compute=compute, check_finite=check_finite, **options)
    if opts.run.pop("resume", False):
        raise ValueError("resume=True is not supported by qr (rerun instead)")
    p = plan(A, mode, out, fan_in, opts.workers, tree)
    R = p.outputs[0].matrix
    p.finish = (lambda: R) if mode == "r" else (lambda: QRResult(p.outputs[1].matrix, R))
    return opts.submit(p, inputs=[A])


def check(A: BigMatrix, mode: str, tree: str = "flat") -> None:
    """Refuse what CAQR cannot factor, naming why, before any task runs."""
    if tree not in TREES:
        raise ValueError(f"qr: tree must be one of {TREES}, got {tree!r}")
    if not isinstance(A, BigMatrix):
        raise TypeError(f"qr takes a BigMatrix, got {type(A).__name__} (store it with BigMatrix.from_numpy)")
    if mode not in ("reduced", "complete", "r"):
        raise ValueError(f"qr: mode must be 'reduced', 'complete' or 'r', got {mode!r}")
    if not np.issubdtype(A.dtype, np.inexact):
        raise TypeError(f"qr: A must hold float32, float64, complex64 or complex128 values, got {A.dtype}")
    br, bc = A.tile_shape
    if A.grid[0] > 1 and A.grid[1] > 1 and br != bc:   # one tile row (a 1 x n A, clipped tiles): one panel
        raise ValueError(f"qr: A's tiles are {br}x{bc}; CAQR over several column tiles needs square tiles "
                         f"(store A again with tile_shape=({bc}, {bc}))")
    jobs.check_complete(A)
