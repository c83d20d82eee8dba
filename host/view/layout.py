"""Where the line diagram puts each component: drawn from the line file's modules, parts
and connections, so any line gets a diagram without drawing it by hand.

Tubes are drawn as the pipes between what they connect (labelled with their id), not as
boxes.  Every other component is a node; its column is the length of the longest flow
path from a source to it, and the nodes of one column are stacked in the line file's
order.  Protections (relief valves, thermal cut-outs) are listed on the component they
sit at.
"""

from __future__ import annotations

PIPE_KINDS = ("tube",)


def _collapse_pipes(line) -> tuple[list[str], list[dict]]:
    """The node ids (line order: modules, then parts) and the edges between nodes, each
    tube between two nodes folded into one edge labelled with the tube's id."""
    pipes = {pid for pid, p in line.parts.items() if p.kind in PIPE_KINDS}
    nodes = [mid for mid in line.modules] + [pid for pid in line.parts if pid not in pipes]
    outs: dict[str, list[str]] = {}
    for a, b in line.connections:
        outs.setdefault(a, []).append(b)
    edges = []
    for a, b in line.connections:
        if a in pipes:
            continue
        via = []
        targets = [b]
        while targets and targets[0] in pipes:  # follow a run of tubes
            via.append(targets[0])
            targets = outs.get(targets[0], [])
        for target in targets:
            edges.append({"from": a, "to": target, "via": via})
    return nodes, edges


def _columns(nodes: list[str], edges: list[dict]) -> dict[str, int]:
    """Longest-path depth of every node from the sources (cycles are cut)."""
    incoming: dict[str, list[str]] = {n: [] for n in nodes}
    for e in edges:
        if e["to"] in incoming and e["from"] in incoming:
            incoming[e["to"]].append(e["from"])
    depth: dict[str, int] = {}

    def visit(node: str, seen: frozenset) -> int:
        if node in depth:
            return depth[node]
        parents = [p for p in incoming[node] if p not in seen]
        d = 0 if not parents else 1 + max(visit(p, seen | {node}) for p in parents)
        depth[node] = d
        return d

    for n in nodes:
        visit(n, frozenset())
    return depth


def line_layout(line) -> dict:
    """The diagram of ``line`` (a ``line.model.Line``) as JSON-able data::

    {"line": id, "description": text,
     "nodes": [{"id", "kind", "module": bool, "col", "row", "role", "protections"}],
     "edges": [{"from", "to", "via": [tube ids]}], "cols": n, "rows": n}
    """
    nodes, edges = _collapse_pipes(line)
    cols = _columns(nodes, edges)
    rows: dict[int, int] = {}
    out = []
    for nid in nodes:
        comp = line.modules.get(nid) or line.parts[nid]
        col = cols[nid]
        row = rows.get(col, 0)
        rows[col] = row + 1
        out.append(
            {
                "id": nid,
                "kind": comp.kind,
                "module": nid in line.modules,
                "col": col,
                "row": row,
                "role": comp.params.get("role"),
                "protections": [
                    {"id": p.id, "kind": p.kind} for p in line.protections if p.at == nid
                ],
            }
        )
    return {
        "line": line.id,
        "description": line.description,
        "nodes": out,
        "edges": edges,
        "cols": 1 + max(cols.values(), default=0),
        "rows": max(rows.values(), default=1),
    }
