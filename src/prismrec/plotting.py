"""Dependency-free SVG scatter plots (for ``prismrec inspect --tsne``): one colour per group, a
legend, no axes (t-SNE coordinates have no units)."""
from __future__ import annotations

from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np

PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
           "#bcbd22", "#17becf"]


def scatter_svg(path: str | Path, xy: np.ndarray, groups: np.ndarray, names: list[str], title: str = "",
                size: int = 640, radius: float = 2.2) -> None:
    """Write ``xy`` (P, 2) as points coloured by ``groups`` (P,) (indices into ``names``)."""
    xy, groups = np.asarray(xy, dtype=np.float64), np.asarray(groups)
    if xy.ndim != 2 or xy.shape[1] != 2 or len(xy) != len(groups):
        raise ValueError(f"xy must be (P, 2) and groups (P,); got {xy.shape} and {groups.shape}")
    margin, legend_w, top = 20, 150, 36 if title else 16
    lo, hi = xy.min(0), xy.max(0)
    scale = (size - 2 * margin) / max(float((hi - lo).max()), 1e-12)
    px = margin + (xy - lo) * scale
    px[:, 1] = top + (size - 2 * margin) - (xy[:, 1] - lo[1]) * scale  # y grows downwards in SVG
    height = top + size - 2 * margin + margin
    style = " ".join(f".g{g}{{fill:{PALETTE[g % len(PALETTE)]};fill-opacity:0.7}}" for g in range(len(names)))
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{size + legend_w}" height="{height}" '
             f'font-family="sans-serif" font-size="12">', f"<style>{style}</style>",
             f'<rect width="{size + legend_w}" height="{height}" fill="white"/>']
    if title:
        parts.append(f'<text x="{margin}" y="22" font-size="14">{escape(title)}</text>')
    order = np.random.default_rng(0).permutation(len(xy))  # interleave groups so none hides another
    parts += [f'<circle class="g{int(groups[i])}" cx="{px[i, 0]:.1f}" cy="{px[i, 1]:.1f}" r="{radius}"/>'
              for i in order]
    for g, name in enumerate(names):
        y = top + 10 + 20 * g
        parts.append(f'<circle cx="{size + 10}" cy="{y}" r="5" fill="{PALETTE[g % len(PALETTE)]}"/>')
        parts.append(f'<text x="{size + 22}" y="{y + 4}">{escape(name)}</text>')
    parts.append("</svg>")
    Path(path).write_text("\n".join(parts) + "\n", encoding="utf-8")
