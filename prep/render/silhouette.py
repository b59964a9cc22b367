"""Soft silhouette: the boundary term that gives vertex positions a gradient from coverage.

Camera convention: OpenCV (x right, y down, z forward), pixel centres at integer coordinates (see
`prep.render.raster`).

The hard coverage of a mesh is piecewise constant, so its gradient w.r.t. vertex positions is zero
almost everywhere. We soften it only where it changes: at the outline. Outline edges are mesh edges
between a front-facing and a back-facing (or missing) triangle whose outer side is not covered by
other geometry (so eye holes and occluded contours do not count). Each pixel within
``margin * sigma_px`` of an outline edge gets

    silhouette = sigmoid(s * d / sigma_px),   s = +1 inside the hard mask, -1 outside,

with ``d`` the pixel's screen distance to its nearest outline edge, differentiable w.r.t. the edge's
vertices; every other pixel keeps its hard value. Moving an edge outwards raises the coverage of the
pixels around it, as the SoftRas silhouette does, at the cost of one pass over the outline pixels
rather than over every (pixel, triangle) pair.
"""

from __future__ import annotations

import torch
from torch import Tensor

from prep.render.raster import (
    DEFAULT_CHUNK,
    Fragments,
    box_blocks,
    camera_to_pixels,
    rasterize,
    sanitize_vertices,
    valid_faces,
)


def mesh_edges(faces: Tensor) -> tuple[Tensor, Tensor]:
    """Unique undirected edges and the faces on each side.

    Args:
        faces: (F,3) vertex indices.

    Returns:
        (edges (E,2) vertex ids, edge_faces (E,2) face ids; the second is -1 on a mesh border).
    """
    F_ = faces.shape[0]
    half = torch.cat([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])  # (3F,2)
    face_of = torch.arange(F_, device=faces.device).repeat(3)
    key_edges = torch.sort(half, dim=1).values
    edges, inv = torch.unique(key_edges, dim=0, return_inverse=True)
    order = torch.argsort(inv, stable=True)
    inv_sorted, face_sorted = inv[order], face_of[order]
    first = torch.ones_like(inv_sorted, dtype=torch.bool)
    first[1:] = inv_sorted[1:] != inv_sorted[:-1]
    edge_faces = torch.full((len(edges), 2), -1, dtype=torch.long, device=faces.device)
    edge_faces[inv_sorted[first], 0] = face_sorted[first]
    edge_faces[inv_sorted[~first], 1] = face_sorted[~first]  # non-manifold extras: last one wins
    return edges, edge_faces


def _segment_distance(p: Tensor, a: Tensor, b: Tensor) -> Tensor:
    """Distance from points p (...,2) to segments ab (...,2), with a safe gradient at 0."""
    ab = b - a
    t = ((p - a) * ab).sum(-1) / (ab * ab).sum(-1).clamp(min=1e-12)
    q = a + t.clamp(0, 1)[..., None] * ab
    return torch.sqrt(((p - q) ** 2).sum(-1) + 1e-12)


def outline_edges(
    verts_px: Tensor, faces: Tensor, front: Tensor, mask: Tensor, probe_px: float = 1.5
) -> tuple[Tensor, Tensor]:
    """Outline edges of each frame (no gradient).

    Args:
        verts_px: (B,V,2) projected vertices.
        faces: (F,3).
        front: (B,F) bool, drawable front-facing triangles.
        mask: (B,H,W) bool hard coverage.
        probe_px: distance beyond the edge at which the outer side is tested for coverage.

    Returns:
        (frame (N,) int64, edge vertex ids (N,2)).
    """
    B, H, W = mask.shape
    edges, edge_faces = mesh_edges(faces)
    f0, f1 = edge_faces[:, 0], edge_faces[:, 1]
    front0 = front[:, f0]
    front1 = torch.where(f1[None] >= 0, front[:, f1.clamp(min=0)], torch.zeros_like(front0))
    frame, e = (front0 ^ front1).nonzero(as_tuple=True)
    inner_face = torch.where(front0[frame, e], f0[e], f1[e])
    a, b = verts_px[frame, edges[e, 0]], verts_px[frame, edges[e, 1]]
    tri = faces[inner_face]
    third = tri.sum(-1) - edges[e].sum(-1)  # the vertex of the inner face not on the edge
    c = verts_px[frame, third]
    mid = 0.5 * (a + b)
    n = torch.stack([-(b - a)[:, 1], (b - a)[:, 0]], -1)
    n = n / n.norm(dim=-1, keepdim=True).clamp(min=1e-12)
    n = torch.where(((c - mid) * n).sum(-1, keepdim=True) > 0, -n, n)  # point away from the face
    probe = torch.round(mid + probe_px * n).long()
    inside_img = (probe[:, 0] >= 0) & (probe[:, 0] < W) & (probe[:, 1] >= 0) & (probe[:, 1] < H)
    covered = torch.zeros_like(inside_img)
    pi = probe[inside_img]
    covered[inside_img] = mask[frame[inside_img], pi[:, 1], pi[:, 0]]
    keep = ~covered
    return frame[keep], edges[e[keep]]


def soft_silhouette(
    verts_cam: Tensor,
    faces: Tensor,
    K: Tensor,
    image_size: tuple[int, int],
    sigma_px: float = 1.0,
    margin: float = 6.0,
    frags: Fragments | None = None,
    near: float = 1e-3,
    chunk: int = DEFAULT_CHUNK,
) -> Tensor:
    """Differentiable coverage of a batch of meshes.

    Args:
        verts_cam: (B,V,3) OpenCV camera-space vertices.
        faces: (F,3) vertex indices (counter-clockwise seen from outside).
        K: (3,3) or (B,3,3) intrinsics in pixels.
        image_size: (H, W).
        sigma_px: softness of the outline, in pixels.
        margin: pixels farther than ``margin * sigma_px`` from the outline keep their hard value.
        frags: fragments of the same meshes when already rasterised (saves a pass).
        near: triangles with a vertex at z <= near are dropped.
        chunk: candidate pairs per block (memory bound).

    Returns:
        (B,H,W) silhouette in [0,1], differentiable w.r.t. `verts_cam` near the outline.
    """
    H, W = int(image_size[0]), int(image_size[1])
    faces = faces.to(verts_cam.device).long()
    if frags is None:
        frags = rasterize(verts_cam, faces, K, (H, W), near=near, chunk=chunk)
    verts_safe, finite = sanitize_vertices(verts_cam)
    verts_px = camera_to_pixels(verts_safe, K)
    hard = frags.mask.to(verts_safe.dtype)
    with torch.no_grad():
        front = valid_faces(verts_safe, verts_px, finite, faces, near, cull_backfaces=True)
        frame, ev = outline_edges(verts_px.detach(), faces, front, frags.mask)
        pix, row = _nearest_edge(verts_px.detach(), frame, ev, (H, W), margin * sigma_px, chunk)
    if len(pix) == 0:
        return hard
    a = verts_px[frame[row], ev[row, 0]]
    b = verts_px[frame[row], ev[row, 1]]
    rem = pix % (H * W)
    p = torch.stack([rem % W, rem // W], -1).to(verts_px.dtype)
    sign = frags.mask.reshape(-1)[pix].to(verts_px.dtype) * 2 - 1
    soft = torch.sigmoid(sign * _segment_distance(p, a, b) / sigma_px)
    return hard.reshape(-1).index_put((pix,), soft).view_as(hard)


def _nearest_edge(
    verts_px: Tensor, frame: Tensor, ev: Tensor, size: tuple[int, int], reach: float, chunk: int
) -> tuple[Tensor, Tensor]:
    """Pixels within `reach` of an outline edge and the row of their nearest edge."""
    H, W = size
    a, b = verts_px[frame, ev[:, 0]], verts_px[frame, ev[:, 1]]
    lo = torch.minimum(a, b) - reach
    hi = torch.maximum(a, b) + reach
    keys, dists, rows = [], [], []
    for idx, px, py, valid in box_blocks(lo, hi, H, W, chunk):
        p = torch.stack([px, py], -1).to(a.dtype)
        d = _segment_distance(p, a[idx, None], b[idx, None])
        r, k = (valid & (d < reach)).nonzero(as_tuple=True)
        keys.append(frame[idx[r]] * (H * W) + py[r, k] * W + px[r, k])
        dists.append(d[r, k])
        rows.append(idx[r])
    if not keys:
        empty = torch.zeros(0, dtype=torch.long, device=verts_px.device)
        return empty, empty
    key, d, row = torch.cat(keys), torch.cat(dists), torch.cat(rows)
    n = int(frame.max()) + 1 if len(frame) else 1
    best = torch.full((n * H * W,), float("inf"), dtype=d.dtype, device=d.device)
    best = best.scatter_reduce(0, key, d, "amin")
    win = d <= best[key]
    pick = torch.full((n * H * W,), -1, dtype=torch.long, device=d.device)
    pick = pick.scatter_reduce(0, key[win], row[win], "amax")
    pix = (pick >= 0).nonzero(as_tuple=True)[0]
    return pix, pick[pix]
