"""Drawings of cells and phases (like the paper's Fig. 2): Graphviz DOT text and rendering,
and SVG for web pages (Graphviz, or a plain layered drawing that needs nothing installed)."""

from __future__ import annotations

import html
import itertools
import math
import re
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from rwenas.errors import ConfigError
from rwenas.spaces.macro import MacroGenotype, phase_graph
from rwenas.spaces.micro import Edge, Genotype

_OP_COLOURS = {
    "max_pool_3x3": "#9ecae1", "avg_pool_3x3": "#c6dbef", "skip_connect": "#d9d9d9",
    "sep_conv_3x3": "#fdae6b", "sep_conv_5x5": "#fd8d3c", "sep_conv_7x7": "#e6550d",
    "dil_conv_3x3": "#a1d99b", "dil_conv_5x5": "#74c476", "conv_7x1_1x7": "#bcbddc",
}


def _cell_dot(name: str, edges: Sequence[Edge], concat: Sequence[int], prefix: str) -> list[str]:
    lines = [f'  subgraph cluster_{prefix} {{', f'    label="{name} cell"; fontsize=16;',
             f'    {prefix}_in0 [label="c_{{k-2}}", shape=box, style=filled, '
             'fillcolor="#fbb4ae"];',
             f'    {prefix}_in1 [label="c_{{k-1}}", shape=box, style=filled, '
             'fillcolor="#fbb4ae"];']
    n_blocks = len(edges) // 2
    for b in range(n_blocks):
        lines.append(f'    {prefix}_n{b + 2} [label="{b + 2}", shape=circle, style=filled, '
                     'fillcolor="#ffffcc"];')
    lines.append(f'    {prefix}_out [label="c_{{k}}", shape=box, style=filled, '
                 'fillcolor="#b3cde3"];')
    for j, (op, idx) in enumerate(edges):
        src = f"{prefix}_in{idx}" if idx < 2 else f"{prefix}_n{idx}"
        colour = _OP_COLOURS.get(op, "black")
        lines.append(f'    {src} -> {prefix}_n{j // 2 + 2} [label="{op}", color="{colour}", '
                     'fontsize=10, penwidth=2];')
    for c in concat:
        lines.append(f'    {prefix}_n{c} -> {prefix}_out [color=gray];')
    lines.append("  }")
    return lines


def micro_dot(genotype: Genotype, title: str = "", *, top_down: bool = False) -> str:
    """DOT text of the normal and reduction cells of a micro genotype. Graphviz stacks the
    cells bottom-up in the order given; ``top_down=True`` lists them the other way round so
    that the normal cell is drawn on top."""
    lines = ["digraph cells {", "  rankdir=LR; node [fontname=Helvetica]; "
             "edge [fontname=Helvetica];"]
    if title:
        lines.append(f'  labelloc=t; label="{title}";')
    cells = [_cell_dot("normal", genotype.normal, genotype.normal_concat, "normal"),
             _cell_dot("reduction", genotype.reduce, genotype.reduce_concat, "reduce")]
    for cell in reversed(cells) if top_down else cells:
        lines += cell
    lines.append("}")
    return "\n".join(lines) + "\n"


def macro_dot(genotype: MacroGenotype, title: str = "", *, top_down: bool = False) -> str:
    """DOT text of the phases of a macro genotype (removed phases shown as such);
    ``top_down=True`` makes Graphviz draw the first phase on top (see :func:`micro_dot`)."""
    lines = ["digraph phases {", "  rankdir=LR; node [fontname=Helvetica];"]
    if title:
        lines.append(f'  labelloc=t; label="{title}";')
    out = genotype.n_nodes + 1
    phases = list(enumerate(genotype.phases))
    for p, bits in reversed(phases) if top_down else phases:
        graph = phase_graph(bits, genotype.n_nodes)
        lines += [f"  subgraph cluster_p{p} {{", f'    label="phase {p + 1}";']
        if graph is None:
            lines.append(f'    p{p}_none [label="removed (no connections)", shape=plaintext];')
        else:
            lines.append(f'    p{p}_n0 [label="input", shape=box, style=filled, '
                         'fillcolor="#fbb4ae"];')
            lines.append(f'    p{p}_n{out} [label="output", shape=box, style=filled, '
                         'fillcolor="#b3cde3"];')
            for node in sorted(k for k in graph if k != out):
                lines.append(f'    p{p}_n{node} [label="conv3x3 {node}", shape=ellipse, '
                             'style=filled, fillcolor="#fdae6b"];')
            for dst, srcs in graph.items():
                for s in srcs:
                    lines.append(f"    p{p}_n{s} -> p{p}_n{dst};")
        lines.append("  }")
    lines.append("}")
    return "\n".join(lines) + "\n"


def genotype_dot(genotype: object, title: str = "", *, top_down: bool = False) -> str:
    if isinstance(genotype, Genotype):
        return micro_dot(genotype, title, top_down=top_down)
    if isinstance(genotype, MacroGenotype):
        return macro_dot(genotype, title, top_down=top_down)
    raise ConfigError(f"no drawing for genotypes of type {type(genotype).__name__}")


def render_dot(dot_text: str, out: str | Path) -> Path:
    """Write ``dot_text`` to ``out``: as DOT for ``.dot``, rendered by Graphviz for ``.svg`` /
    ``.png``. Without Graphviz the DOT text is written beside it (``out`` with ``.dot``) and
    that path is returned."""
    out = Path(out)
    fmt = out.suffix.lower().lstrip(".")
    if fmt not in ("dot", "gv", "svg", "png", "pdf"):
        raise ConfigError(f"--draw needs a .svg, .png, .pdf or .dot file name, got {out.name}")
    out.parent.mkdir(parents=True, exist_ok=True)
    dot = shutil.which("dot")
    if fmt in ("dot", "gv") or dot is None:
        target = out if fmt in ("dot", "gv") else out.with_suffix(".dot")
        target.write_text(dot_text)
        return target
    result = subprocess.run([dot, f"-T{fmt}", "-o", str(out)], input=dot_text.encode(),
                            capture_output=True, check=False, timeout=60)
    if result.returncode != 0:
        raise ConfigError(f"Graphviz failed to draw {out}: "
                          f"{result.stderr.decode(errors='replace').strip()[:200]}")
    return out


# -- SVG for web pages: Graphviz when installed, else a plain layered drawing -------------------
#: darker colours than the DOT fills, readable as lines and text on white (one hue per family)
_OP_LINE_COLOURS = {
    "max_pool_3x3": "#08519c", "avg_pool_3x3": "#4292c6", "skip_connect": "#737373",
    "sep_conv_3x3": "#f16913", "sep_conv_5x5": "#d94801", "sep_conv_7x7": "#a63603",
    "dil_conv_3x3": "#31a354", "dil_conv_5x5": "#006d2c", "conv_7x1_1x7": "#756bb1",
}
_FONT = "system-ui, -apple-system, 'Segoe UI', Roboto, Helvetica, Arial, sans-serif"
_XML_PROLOG = re.compile(r"<\?xml.*?\?>|<!DOCTYPE[^>\[]*(\[.*?\])?\s*>|<!--.*?-->", re.S)
_XMLNS = re.compile(r'\s+xmlns(:\w+)?\s*=\s*"[^"]*"')


def inline_svg(svg_text: str, *, standalone: bool = False, id_prefix: str = "") -> str:
    """``svg_text`` cleaned for pasting into an HTML page: XML declaration, DOCTYPE and
    comments removed, and (unless ``standalone``) the namespace declarations too — HTML5 needs
    none for inline ``<svg>``, and a page then holds no URL at all. ``xlink:href`` becomes
    ``href`` (SVG 2). ``id_prefix`` is put before every ``id`` (several drawings on one page
    must not share ids)."""
    text = _XML_PROLOG.sub("", svg_text).strip()
    if id_prefix:
        text = re.sub(r'(\s)id="', rf'\1id="{id_prefix}', text)
    text = text.replace("xlink:href=", "href=")
    start = text.find("<svg")
    if start < 0:
        raise ConfigError("not an SVG drawing (no <svg> element)")
    end = text.find(">", start)
    head = _XMLNS.sub("", text[start:end])
    if standalone:
        head = head.replace("<svg", '<svg xmlns="http://www.w3.org/2000/svg"', 1)
    return text[:start] + head + text[end:]


def graphviz_svg(dot_text: str) -> str:
    """SVG text of ``dot_text`` rendered by Graphviz's ``dot`` (:class:`ConfigError` when it is
    not installed or fails)."""
    dot = shutil.which("dot")
    if dot is None:
        raise ConfigError("Graphviz is not installed (no 'dot' on PATH)")
    try:
        result = subprocess.run([dot, "-Tsvg"], input=dot_text.encode(), capture_output=True,
                                check=False, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ConfigError(f"Graphviz failed to draw: {exc}") from None
    if result.returncode != 0:
        raise ConfigError(f"Graphviz failed to draw: "
                          f"{result.stderr.decode(errors='replace').strip()[:200]}")
    return result.stdout.decode("utf-8", errors="replace")


def genotype_svg(genotype: object, title: str = "", *, use_graphviz: bool | None = None,
                 standalone: bool = False, id_prefix: str = "") -> str:
    """An SVG drawing of a genotype's cells (micro, NAS-Bench-301) or phases (macro).

    With ``use_graphviz=None`` Graphviz draws it when ``dot`` is on PATH (falling back if it
    fails), otherwise :func:`plain_svg` does, which needs nothing installed; ``True`` insists
    on Graphviz, ``False`` forces the plain drawing. The result is ready to paste into HTML
    (see :func:`inline_svg`); ``standalone=True`` keeps the SVG namespace for a ``.svg`` file,
    ``id_prefix`` makes the ids of Graphviz's elements unique on a page.
    :class:`ConfigError` for genotypes of a space without a drawing.
    """
    # raises "no drawing" for genotypes of other spaces
    dot_text = genotype_dot(genotype, title, top_down=True)
    if use_graphviz or (use_graphviz is None and shutil.which("dot") is not None):
        try:
            return inline_svg(graphviz_svg(dot_text), standalone=standalone,
                              id_prefix=id_prefix)
        except ConfigError:
            if use_graphviz:
                raise
    return plain_svg(genotype, title, standalone=standalone)


def plain_svg(genotype: object, title: str = "", *, standalone: bool = False) -> str:
    """A drawing without Graphviz: each cell or phase as a layered graph, inputs on the left,
    nodes in columns by depth, the output on the right; micro edges are labelled with their
    operation and coloured by its family."""
    if isinstance(genotype, Genotype):
        panels = [_micro_panel("normal cell", genotype.normal, genotype.normal_concat),
                  _micro_panel("reduction cell", genotype.reduce, genotype.reduce_concat)]
    elif isinstance(genotype, MacroGenotype):
        panels = []
        for p, bits in enumerate(genotype.phases):
            graph = phase_graph(bits, genotype.n_nodes)
            panels.append(_macro_panel(f"phase {p + 1}", graph, genotype.n_nodes))
    else:
        raise ConfigError(f"no drawing for genotypes of type {type(genotype).__name__}")
    pad = 10
    y = pad
    body: list[str] = []
    if title:
        body.append(f'<text x="{pad}" y="{y + 16}" font-size="16" font-weight="600">'
                    f"{_esc(title)}</text>")
        y += 28
    width = max(w for w, _, _ in panels) + 2 * pad
    for _, h, parts in panels:
        body.append(f'<g transform="translate({pad},{y})">')
        body += parts
        body.append("</g>")
        y += h + pad
    height = y
    ns = ' xmlns="http://www.w3.org/2000/svg"' if standalone else ""
    label = _esc(title or "architecture drawing")
    return (f'<svg{ns} class="plain-drawing" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" role="img" aria-label="{label}" '
            f'font-family="{_FONT}" font-size="11">\n<title>{label}</title>\n'
            + "\n".join(body) + "\n</svg>\n")


def _esc(text: object) -> str:
    return html.escape(str(text), quote=True)


class _Node:
    """A node of a layered drawing: its shape's half-width and half-height, or a dummy point
    that carries a long edge through a column."""

    def __init__(self, shape: str, half_w: float = 0.0, half_h: float = 0.0) -> None:
        self.shape, self.half_w, self.half_h = shape, half_w, half_h
        self.x = self.y = 0.0

    def edge_x(self, dy: float, side: int) -> float:
        """x where a line at height ``y + dy`` meets the node's left (-1) or right (+1) side."""
        if self.shape in ("circle", "ellipse") and self.half_h:
            dy = min(abs(dy), self.half_h * 0.95)
            return self.x + side * self.half_w * math.sqrt(1 - (dy / self.half_h) ** 2)
        return self.x + side * self.half_w


def _layered(nodes: dict[object, _Node], sources: Sequence[object],
             edges: Sequence[tuple[object, object]], col_gap: float, row_gap: float,
             top: float) -> tuple[list[list[tuple[float, float]]], float, float]:
    """Lay out a DAG in columns (a small Sugiyama layout): a node's column is its longest path
    from the ``sources`` (``nodes`` is in topological order); an edge spanning several columns
    gets a dummy point in each column between; rows come from barycentre sweeps. Sets every
    node's x and y; returns each edge's points (start port, dummy points, end port), the width
    and the height."""
    preds: dict[object, list[object]] = {n: [] for n in nodes}
    for s, d in edges:
        preds[d].append(s)
    depth: dict[object, int] = {}
    for n in nodes:
        depth[n] = 0 if n in sources else 1 + max((depth[s] for s in preds[n]), default=-1)
    layers: list[list[object]] = [[] for _ in range(max(depth.values()) + 1)]
    for n in nodes:
        layers[depth[n]].append(n)
    all_nodes: dict[object, _Node] = dict(nodes)
    chains: list[list[object]] = []
    up: dict[object, list[object]] = {n: [] for n in nodes}
    down: dict[object, list[object]] = {n: [] for n in nodes}
    for i, (s, d) in enumerate(edges):
        chain = [s]
        for layer in range(depth[s] + 1, depth[d]):
            dummy = ("dummy", i, layer)
            all_nodes[dummy] = _Node("dummy")
            up[dummy], down[dummy] = [], []
            layers[layer].append(dummy)
            chain.append(dummy)
        chain.append(d)
        for a, b in itertools.pairwise(chain):
            down[a].append(b)
            up[b].append(a)
        chains.append(chain)

    def rows() -> dict[object, int]:
        return {n: r for layer in layers for r, n in enumerate(layer)}

    for _ in range(4):
        for neighbours, sweep in ((up, range(1, len(layers))),
                                  (down, range(len(layers) - 2, 0, -1))):
            for li in sweep:
                row = rows()
                layers[li].sort(key=lambda n, nb=neighbours, row=row: (
                    sum(row[m] for m in nb[n]) / len(nb[n]) if nb[n] else row[n]))
    tallest = max(len(layer) for layer in layers)
    for c, layer in enumerate(layers):
        offset = (tallest - len(layer)) * row_gap / 2
        for r, n in enumerate(layer):
            all_nodes[n].x = 40 + c * col_gap
            all_nodes[n].y = top + row_gap / 2 + offset + r * row_gap
    # spread the ends of the lines meeting a node over its side, ordered by the other end
    port: dict[tuple[int, int, int], float] = {}
    for n, node in all_nodes.items():
        for side in (-1, +1):
            ends = [(i, k) for i, ch in enumerate(chains) for k, m in enumerate(ch)
                    if m == n and 0 <= k + side < len(ch)]
            ends.sort(key=lambda e, side=side: (all_nodes[chains[e[0]][e[1] + side]].y, e[0]))
            step = min(9.0, 2 * max(node.half_h - 4, 0) / max(1, len(ends) - 1))
            for j, (i, k) in enumerate(ends):
                port[(i, k, side)] = (j - (len(ends) - 1) / 2) * step
    paths = []
    for i, chain in enumerate(chains):
        points = []
        for k, n in enumerate(chain):
            node = all_nodes[n]
            if k > 0:  # arriving
                dy = port[(i, k, -1)]
                points.append((node.edge_x(dy, -1), node.y + dy))
            if k < len(chain) - 1:  # leaving
                dy = port[(i, k, +1)]
                point = (node.edge_x(dy, +1), node.y + dy)
                if not points or point != points[-1]:
                    points.append(point)
        paths.append(points)
    return paths, 80 + (len(layers) - 1) * col_gap, top + tallest * row_gap


def _curve(points: Sequence[tuple[float, float]], colour: str, width: float) -> list[str]:
    """A smooth path through ``points`` (horizontal tangents at each) ending in an arrowhead."""
    (x0, y0), *rest = points
    x_end, y_end = rest[-1]
    rest = [*rest[:-1], (x_end - 7, y_end)]
    d = [f"M{x0:.1f},{y0:.1f}"]
    ax, ay = x0, y0
    for bx, by in rest:
        h = (bx - ax) / 2
        d.append(f"C{ax + h:.1f},{ay:.1f} {bx - h:.1f},{by:.1f} {bx:.1f},{by:.1f}")
        ax, ay = bx, by
    head = (f"{x_end:.1f},{y_end:.1f} {x_end - 8:.1f},{y_end - 4:.1f} "
            f"{x_end - 8:.1f},{y_end + 4:.1f}")
    return [f'<path d="{" ".join(d)}" fill="none" stroke="{colour}" stroke-width="{width}"/>',
            f'<polygon points="{head}" fill="{colour}"/>']


def _box(node: _Node, text: str, fill: str) -> str:
    return (f'<rect x="{node.x - node.half_w:.1f}" y="{node.y - node.half_h:.1f}" '
            f'width="{2 * node.half_w:.1f}" height="{2 * node.half_h:.1f}" rx="4" '
            f'fill="{fill}" stroke="#333"/><text x="{node.x:.1f}" y="{node.y + 4:.1f}" '
            f'text-anchor="middle" font-size="12">{_esc(text)}</text>')


def _micro_panel(name: str, edges: Sequence[Edge],
                 concat: Sequence[int]) -> tuple[float, float, list[str]]:
    n_blocks = len(edges) // 2
    nodes: dict[object, _Node] = {0: _Node("box", 30, 13), 1: _Node("box", 30, 13)}
    nodes.update({b: _Node("circle", 14, 14) for b in range(2, n_blocks + 2)})
    nodes["out"] = _Node("box", 26, 13)
    links = [(idx, j // 2 + 2) for j, (_, idx) in enumerate(edges)]
    links += [(c, "out") for c in concat]
    paths, width, height = _layered(nodes, [0, 1], links, col_gap=170, row_gap=62, top=22)
    parts = [f'<text x="0" y="14" font-size="13" font-weight="600">{_esc(name)}</text>']
    labels = []
    for j, (op, _) in enumerate(edges):
        colour = _OP_LINE_COLOURS.get(op, "#000000")
        points = paths[j]
        parts += _curve(points, colour, 2)
        bx, by = points[-1]
        # a block's two inputs: the upper line is labelled above, the lower one below, both
        # just before the arrowhead (where the lines run level)
        other = paths[j + 1 if j % 2 == 0 else j - 1][-1][1]
        above = by < other or (by == other and j % 2 == 0)
        labels.append(f'<text x="{bx - 11:.1f}" y="{by + (-6 if above else 14):.1f}" '
                      f'text-anchor="end" fill="{colour}" stroke="#fff" stroke-width="3" '
                      f'paint-order="stroke" font-size="10.5" class="op">{_esc(op)}</text>')
    for points in paths[len(edges):]:
        parts += _curve(points, "#aaaaaa", 1.2)
    parts += labels
    parts.append(_box(nodes[0], "c_{k-2}", "#fbb4ae"))
    parts.append(_box(nodes[1], "c_{k-1}", "#fbb4ae"))
    for b in range(2, n_blocks + 2):
        n = nodes[b]
        parts.append(f'<circle cx="{n.x:.1f}" cy="{n.y:.1f}" r="14" fill="#ffffcc" '
                     f'stroke="#333"/><text x="{n.x:.1f}" y="{n.y + 4:.1f}" '
                     f'text-anchor="middle" font-size="12">{b}</text>')
    parts.append(_box(nodes["out"], "c_{k}", "#b3cde3"))
    return width, height, parts


def _macro_panel(name: str, graph: dict[int, tuple[int, ...]] | None,
                 n_nodes: int) -> tuple[float, float, list[str]]:
    parts = [f'<text x="0" y="14" font-size="13" font-weight="600">{_esc(name)}</text>']
    if graph is None:
        parts.append('<text x="12" y="36" fill="#666">removed (no connections)</text>')
        return 220, 46, parts
    out = n_nodes + 1
    order = [*sorted(k for k in graph if k != out)]
    nodes: dict[object, _Node] = {0: _Node("box", 28, 13)}
    nodes.update({n: _Node("ellipse", 36, 13) for n in order})
    nodes[out] = _Node("box", 28, 13)
    links = [(s, d) for d in [*order, out] for s in graph[d]]
    paths, width, height = _layered(nodes, [0], links, col_gap=122, row_gap=44, top=22)
    for points in paths:
        parts += _curve(points, "#555555", 1.4)
    parts.append(_box(nodes[0], "input", "#fbb4ae"))
    for k in order:
        n = nodes[k]
        parts.append(f'<ellipse cx="{n.x:.1f}" cy="{n.y:.1f}" rx="36" ry="13" fill="#fdae6b" '
                     f'stroke="#333"/><text x="{n.x:.1f}" y="{n.y + 4:.1f}" '
                     f'text-anchor="middle" font-size="11">conv3x3 {k}</text>')
    parts.append(_box(nodes[out], "output", "#b3cde3"))
    return width, height, parts
