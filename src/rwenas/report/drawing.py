"""Drawings of cells and phases (like the paper's Fig. 2): Graphviz DOT text and rendering."""

from __future__ import annotations

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


def micro_dot(genotype: Genotype, title: str = "") -> str:
    """DOT text of the normal and reduction cells of a micro genotype."""
    lines = ["digraph cells {", "  rankdir=LR; node [fontname=Helvetica]; "
             "edge [fontname=Helvetica];"]
    if title:
        lines.append(f'  labelloc=t; label="{title}";')
    lines += _cell_dot("normal", genotype.normal, genotype.normal_concat, "normal")
    lines += _cell_dot("reduction", genotype.reduce, genotype.reduce_concat, "reduce")
    lines.append("}")
    return "\n".join(lines) + "\n"


def macro_dot(genotype: MacroGenotype, title: str = "") -> str:
    """DOT text of the phases of a macro genotype (removed phases shown as such)."""
    lines = ["digraph phases {", "  rankdir=LR; node [fontname=Helvetica];"]
    if title:
        lines.append(f'  labelloc=t; label="{title}";')
    out = genotype.n_nodes + 1
    for p, bits in enumerate(genotype.phases):
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


def genotype_dot(genotype: object, title: str = "") -> str:
    if isinstance(genotype, Genotype):
        return micro_dot(genotype, title)
    if isinstance(genotype, MacroGenotype):
        return macro_dot(genotype, title)
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
