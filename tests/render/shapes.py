"""Small analytic meshes for renderer tests: cube, icosphere, screen-facing quads."""

from __future__ import annotations

import numpy as np
import torch


def cube(half: float = 0.5, centre=(0.0, 0.0, 3.0)) -> tuple[torch.Tensor, torch.Tensor]:
    """Axis-aligned cube (8 vertices, 12 triangles, counter-clockwise seen from outside)."""
    v = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], np.float64)
    quads = [  # outward-facing quads as vertex ids (index = 4x + 2y + z with 0/1 per axis)
        (0, 1, 3, 2),
        (4, 6, 7, 5),
        (0, 4, 5, 1),
        (2, 3, 7, 6),
        (0, 2, 6, 4),
        (1, 5, 7, 3),
    ]
    f = []
    for a, b, c, d in quads:
        f += [(a, b, c), (a, c, d)]
    verts = torch.tensor(v * half + np.asarray(centre), dtype=torch.float64)
    faces = torch.tensor(f, dtype=torch.long)
    # Make every triangle's normal point away from the centre.
    tri = verts[faces]
    n = torch.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0], dim=-1)
    out = (n * (tri.mean(1) - verts.mean(0))).sum(-1) > 0
    faces = torch.where(out[:, None], faces, faces[:, [0, 2, 1]])
    return verts, faces


def icosphere(level: int = 3, radius: float = 1.0, centre=(0.0, 0.0, 4.0)):
    """Subdivided icosahedron (outward counter-clockwise faces)."""
    t = (1 + 5**0.5) / 2
    v = [
        (-1, t, 0),
        (1, t, 0),
        (-1, -t, 0),
        (1, -t, 0),
        (0, -1, t),
        (0, 1, t),
        (0, -1, -t),
        (0, 1, -t),
        (t, 0, -1),
        (t, 0, 1),
        (-t, 0, -1),
        (-t, 0, 1),
    ]
    f = [
        (0, 11, 5),
        (0, 5, 1),
        (0, 1, 7),
        (0, 7, 10),
        (0, 10, 11),
        (1, 5, 9),
        (5, 11, 4),
        (11, 10, 2),
        (10, 7, 6),
        (7, 1, 8),
        (3, 9, 4),
        (3, 4, 2),
        (3, 2, 6),
        (3, 6, 8),
        (3, 8, 9),
        (4, 9, 5),
        (2, 4, 11),
        (6, 2, 10),
        (8, 6, 7),
        (9, 8, 1),
    ]
    verts = [np.array(p, float) / np.linalg.norm(p) for p in v]
    for _ in range(level):
        cache: dict[tuple[int, int], int] = {}

        def mid(a: int, b: int, cache: dict = cache) -> int:
            key = (min(a, b), max(a, b))
            if key not in cache:
                m = verts[a] + verts[b]
                verts.append(m / np.linalg.norm(m))
                cache[key] = len(verts) - 1
            return cache[key]

        nf = []
        for a, b, c in f:
            ab, bc, ca = mid(a, b), mid(b, c), mid(c, a)
            nf += [(a, ab, ca), (b, bc, ab), (c, ca, bc), (ab, bc, ca)]
        f = nf
    verts_t = torch.tensor(np.stack(verts) * radius + np.asarray(centre), dtype=torch.float64)
    faces = torch.tensor(f, dtype=torch.long)
    tri = verts_t[faces]
    n = torch.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0], dim=-1)
    out = (n * (tri.mean(1) - torch.tensor(centre, dtype=torch.float64))).sum(-1) > 0
    return verts_t, torch.where(out[:, None], faces, faces[:, [0, 2, 1]])


def K_of(f: float, size: int) -> torch.Tensor:
    """Square-pixel intrinsics centred on a size x size image (float64)."""
    c = (size - 1) / 2
    return torch.tensor([[f, 0, c], [0, f, c], [0, 0, 1]], dtype=torch.float64)
