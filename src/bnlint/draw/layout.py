"""A layered (Sugiyama-style) layout of a directed acyclic graph, top to bottom.

Our own, in one module, rather than grandalf (the one pure-Python Sugiyama library):
grandalf orders nodes through sets of objects hashed by id, so the same net gives a
different picture from one run to the next (SVGs must be byte-identical), it grows
faster than linearly (6 s for a 6,000-node chain with skips on this machine), its last
release is from January 2023, and it is GPL/EPL-licensed. A Caffe net is already
topologically ordered (a bottom is always written earlier), which makes the classic
steps short:

1. ranks by longest path from the sources; a source is pulled down to just above
   its first reader (a label layer should not sit at the top of a 900-layer net);
2. an edge that spans several ranks gets a dummy node per rank it crosses, so it is
   routed between the nodes and not through them;
3. crossings are reduced by barycenter sweeps (down and up), keeping the order with
   the fewest crossings (counted exactly, bilayer by bilayer, with a Fenwick tree);
4. x coordinates: links that run straight are chosen first, as a matching of upper
   and lower nodes: the longest edges (a residual trunk), then short links into a
   node that goes on with a long edge (a projection shortcut), then central ones. In
   each sweep a node continues the line of its partner in the previous rank and
   otherwise moves towards the mean x of its neighbours there; the smallest moves
   that keep the order and the gaps are found exactly by weighted isotonic regression
   (pool adjacent violators), partners weighing most. Long edges and chains run
   straight, and a residual net does not drift sideways block after block.

Everything is in input order with stable sorts: the same graph gives the same layout.
Time grows about linearly with nodes plus dummy nodes.
"""

from __future__ import annotations

from dataclasses import dataclass

Point = tuple[float, float]


@dataclass
class Layout:
    x: list[float]                  # centre of each node
    y: list[float]                  # top of each node
    routes: list[list[Point]]       # per edge: points from the source's bottom to the target's top
    width: float
    height: float


def layered_layout(sizes: list[tuple[float, float]], edges: list[tuple[int, int]],
                   node_gap: float = 28.0, rank_gap: float = 40.0,
                   sweeps: int = 6) -> Layout:
    """Place nodes of `sizes` (width, height) so that `edges` (src, dst) point down.

    Edges must go from a lower to a higher node index (a topological order), as a
    Caffe net's file order gives.
    """
    n = len(sizes)
    if any(src >= dst for src, dst in edges):
        raise ValueError("edges must go from a lower to a higher node index")
    rank = _ranks(n, edges)
    # nodes: real ones first, then dummies; every link joins adjacent ranks
    node_rank = list(rank)
    widths = [w for w, _ in sizes]
    links: list[tuple[int, int]] = []
    span: dict[tuple[int, int], int] = {}   # per link: ranks its edge spans
    chains: list[list[int]] = []     # per edge: its nodes, source to target
    for src, dst in edges:
        chain = [src]
        for r in range(rank[src] + 1, rank[dst]):
            node_rank.append(r)
            widths.append(8.0)
            chain.append(len(node_rank) - 1)
        chain.append(dst)
        links.extend(zip(chain, chain[1:]))
        for link in zip(chain, chain[1:]):
            span[link] = max(span.get(link, 0), rank[dst] - rank[src])
        chains.append(chain)
    total = len(node_rank)
    ups: list[list[int]] = [[] for _ in range(total)]
    downs: list[list[int]] = [[] for _ in range(total)]
    for a, b in dict.fromkeys(links):
        downs[a].append(b)
        ups[b].append(a)
    layers = _initial_order(n, total, node_rank, downs)
    layers = _reduce_crossings(layers, ups, downs, sweeps)
    xs = _coordinates(layers, widths, ups, downs, span, node_gap)

    heights = [0.0] * len(layers)
    for v in range(n):
        heights[rank[v]] = max(heights[rank[v]], sizes[v][1])
    tops = []
    y = 0.0
    for h in heights:
        tops.append(y)
        y += h + rank_gap
    height = y - rank_gap if layers else 0.0
    left = min((xs[v] - widths[v] / 2 for v in range(total)), default=0.0)
    xs = [x - left for x in xs]
    width = max((xs[v] + widths[v] / 2 for v in range(total)), default=0.0)
    routes = []
    for chain in chains:
        src, dst = chain[0], chain[-1]
        points = [(xs[src], tops[rank[src]] + sizes[src][1])]
        for d in chain[1:-1]:
            r = node_rank[d]
            points += [(xs[d], tops[r]), (xs[d], tops[r] + heights[r])]
        points.append((xs[dst], tops[rank[dst]]))
        routes.append(points)
    return Layout(xs[:n], [tops[rank[v]] for v in range(n)], routes, width, height)


def _ranks(n: int, edges: list[tuple[int, int]]) -> list[int]:
    preds: list[list[int]] = [[] for _ in range(n)]
    succs: list[list[int]] = [[] for _ in range(n)]
    for src, dst in edges:
        preds[dst].append(src)
        succs[src].append(dst)
    rank = [0] * n
    for v in range(n):
        if preds[v]:
            rank[v] = max(rank[u] for u in preds[v]) + 1
    for v in range(n - 1, -1, -1):       # sources sit just above their first reader
        if not preds[v] and succs[v]:
            rank[v] = min(rank[s] for s in succs[v]) - 1
    return rank


def _initial_order(n: int, total: int, node_rank: list[int],
                   downs: list[list[int]]) -> list[list[int]]:
    """Depth-first from the sources in input order: a chain stays in one column."""
    seen = [False] * total
    order: list[int] = []
    for root in range(n):
        if seen[root]:
            continue
        stack = [root]
        while stack:
            v = stack.pop()
            if seen[v]:
                continue
            seen[v] = True
            order.append(v)
            stack.extend(reversed(downs[v]))
    layers: list[list[int]] = [[] for _ in range(max(node_rank, default=-1) + 1)]
    for v in order:
        layers[node_rank[v]].append(v)
    return layers


def _reduce_crossings(layers, ups, downs, sweeps: int) -> list[list[int]]:
    best = [list(layer) for layer in layers]
    best_crossings = _crossings(best, downs)
    current = [list(layer) for layer in layers]
    for sweep in range(sweeps):
        if best_crossings == 0:
            break
        downward = sweep % 2 == 0
        ranks = range(1, len(current)) if downward else range(len(current) - 2, -1, -1)
        for r in ranks:
            fixed = current[r - 1] if downward else current[r + 1]
            position = {v: i for i, v in enumerate(fixed)}
            neighbours = ups if downward else downs
            keys = []
            for i, v in enumerate(current[r]):
                near = [position[u] for u in neighbours[v] if u in position]
                keys.append(sum(near) / len(near) if near else float(i) * len(fixed)
                            / max(len(current[r]), 1))
            current[r] = [v for _, v in sorted(zip(keys, current[r]), key=lambda kv: kv[0])]
        crossings = _crossings(current, downs)
        if crossings < best_crossings:
            best, best_crossings = [list(layer) for layer in current], crossings
    return best


def _crossings(layers: list[list[int]], downs: list[list[int]]) -> int:
    """Edge crossings between each pair of adjacent ranks (Barth, Juenger, Mutzel)."""
    total = 0
    for upper, lower in zip(layers, layers[1:]):
        position = {v: i for i, v in enumerate(lower)}
        targets = [position[w] for v in upper
                   for w in sorted(downs[v], key=lambda w: position.get(w, -1))
                   if w in position]
        tree = [0] * (len(lower) + 1)
        for seen, p in enumerate(targets):
            # how many earlier edges end to the right of p
            i, below = p + 1, 0
            while i > 0:
                below += tree[i]
                i -= i & -i
            total += seen - below
            i = p + 1
            while i <= len(lower):
                tree[i] += 1
                i += i & -i
    return total


def _coordinates(layers, widths, ups, downs, span: dict, gap: float) -> list[float]:
    xs = [0.0] * len(widths)
    position = [0] * len(widths)
    for layer in layers:
        x = 0.0
        for i, v in enumerate(layer):
            position[v] = i
            xs[v] = x + widths[v] / 2
            x += widths[v] + gap

    # Which links run straight: a matching of upper and lower nodes, the longest edges
    # first (a residual net's trunk), then the most central links.
    def centre(near) -> float:
        return sum(position[u] for u in near) / len(near) if near else 0.0

    candidates = []
    for u in range(len(widths)):
        for v in downs[u]:
            straightness = span[u, v] if span[u, v] > 1 else 0
            off_centre = abs(position[v] - centre(downs[u])) + abs(position[u] - centre(ups[v]))
            # a short link into a node that goes on with a long edge (a projection
            # shortcut) continues the trunk too
            onward = max((span[v, w] for w in downs[v]), default=0)
            candidates.append((-straightness, -onward, off_centre, position[u], position[v],
                               u, v))
    candidates.sort()
    above = [-1] * len(widths)
    below = [-1] * len(widths)
    for *_, u, v in candidates:
        if below[u] < 0 and above[v] < 0:
            below[u], above[v] = v, u

    def sweep(order, neighbours, partner) -> None:
        for layer in order:
            desired, weights = [], []
            for v in layer:
                near = neighbours[v]
                if partner[v] >= 0:
                    # continue the partner's line: this node should not move; a long
                    # edge (a residual trunk) beats a chain of nodes of unequal widths
                    u = partner[v]
                    long_edge = span.get((u, v), span.get((v, u), 1)) > 1
                    desired.append(xs[u])
                    weights.append(1e12 if long_edge else 1e6)
                elif near:
                    desired.append(sum(xs[u] for u in near) / len(near))
                    weights.append(1.0)
                else:
                    desired.append(xs[v])
                    weights.append(0.1)
            for v, x in zip(layer, _place(desired, [widths[v] for v in layer], gap, weights)):
                xs[v] = x

    for _ in range(4):
        sweep(layers[1:], ups, above)
        sweep(layers[-2::-1], downs, below)
    sweep(layers[1:], ups, above)
    return xs


def _place(desired: list[float], widths: list[float], gap: float,
           weights: list[float]) -> list[float]:
    """The x closest to `desired` (weighted least squares) that keeps the order and the
    gaps."""
    offsets = [0.0]
    for a, b in zip(widths, widths[1:]):
        offsets.append(offsets[-1] + (a + b) / 2 + gap)
    targets = [d - o for d, o in zip(desired, offsets)]
    # pool adjacent violators: blocks of (mean, count) must be non-decreasing
    means: list[float] = []
    masses: list[float] = []
    counts: list[int] = []
    for t, w in zip(targets, weights):
        means.append(t)
        masses.append(w)
        counts.append(1)
        while len(means) > 1 and means[-2] > means[-1]:
            mass = masses[-2] + masses[-1]
            mean = (means[-2] * masses[-2] + means[-1] * masses[-1]) / mass
            means[-2:] = [mean]
            masses[-2:] = [mass]
            counts[-2:] = [counts[-2] + counts[-1]]
    out: list[float] = []
    for m, c in zip(means, counts):
        out.extend([m] * c)
    return [y + o for y, o in zip(out, offsets)]
