"""Z-buffered triangle rasteriser in pure torch, vectorised over triangles, pixels and frames.

Camera convention (as everywhere in prep): OpenCV camera space, x right, y down, z forward (metres);
`K` maps camera points to pixels, ``u = fx * x / z + cx``. Pixel centres lie at integer
coordinates: pixel ``(row i, col j)`` covers ``[j - 0.5, j + 0.5] x [i - 0.5, i + 0.5]`` and is
sampled at ``(x=j, y=i)``.

How it works, without a Python loop over triangles or pixels:

1. Visibility (no gradient). Every valid triangle of every frame is expanded to the integer pixel
   centres inside its screen bounding box (``repeat_interleave`` over the box sizes, processed in
   chunks that bound memory). Each (pixel, triangle) candidate gets edge-function barycentrics; the
   inside ones compete in a z-buffer through ``scatter_reduce(amin)`` (ties go to the larger
   triangle id, so shared edges never leave holes).
2. Attributes (differentiable). For the covered pixels only, barycentrics and depth are recomputed
   from the vertex tensors with autograd on, perspective-correct (``b_i / z_i`` renormalised), so
   anything interpolated with them is differentiable w.r.t. vertex positions and attributes.

Triangles are dropped (never crash, never NaN) when a vertex is non-finite, lies closer than
`near` (no clipping: face meshes never straddle the camera), the triangle is degenerate (screen
area below `min_area_px`), or, with `cull_backfaces`, it faces away from the camera.
Boundaries carry gradient through `prep.render.silhouette.soft_silhouette`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from prep.models.camera import project, transform_points

# Candidate (pixel, triangle) pairs processed at once; bounds peak memory to a few hundred MB.
DEFAULT_CHUNK = 1 << 22


@dataclass
class Fragments:
    """Per-pixel rasterisation result for a batch of frames.

    Attributes:
        tri_id: (B,H,W) int64 index into `faces` of the visible triangle; only meaningful where
            `mask` is true (-1 elsewhere).
        bary: (B,H,W,3) perspective-correct barycentrics, differentiable w.r.t. vertex positions;
            zero where `mask` is false.
        depth: (B,H,W) camera-space z (metres) of the visible surface; zero where `mask` is false.
        mask: (B,H,W) bool, true where a triangle covers the pixel centre.
        pix: (M,) flat indices (into B*H*W) of the covered pixels, in order.
        pix_face: (M,) their triangle ids; pix_bary: (M,3) their barycentrics (differentiable).
            The sparse view lets losses skip the empty pixels entirely (`interpolate_sparse`).
    """

    tri_id: Tensor
    bary: Tensor
    depth: Tensor
    mask: Tensor
    pix: Tensor | None = None
    pix_face: Tensor | None = None
    pix_bary: Tensor | None = None

    @property
    def image_size(self) -> tuple[int, int]:
        return int(self.mask.shape[1]), int(self.mask.shape[2])


def camera_to_pixels(verts_cam: Tensor, K: Tensor) -> Tensor:
    """Project camera-space points (B,V,3) with (3,3) or (B,3,3) intrinsics -> (B,V,2) pixels."""
    K = K.to(verts_cam).expand(verts_cam.shape[0], 3, 3)
    return project(verts_cam, K)[0]


def world_to_camera(verts_world: Tensor, w2c: Tensor) -> Tensor:
    """Apply (B,4,4) or (4,4) world-to-camera transforms to (B,V,3) points."""
    return transform_points(w2c.to(verts_world).expand(verts_world.shape[0], 4, 4), verts_world)


def sanitize_vertices(verts: Tensor) -> tuple[Tensor, Tensor]:
    """Replace non-finite vertices by zeros (so no NaN reaches a gradient) and flag them.

    Returns:
        (verts_safe (B,V,3), finite (B,V) bool).
    """
    finite = torch.isfinite(verts).all(dim=-1)
    return torch.where(finite[..., None], verts, torch.zeros_like(verts)), finite


def valid_faces(
    verts_cam: Tensor,
    verts_px: Tensor,
    finite: Tensor,
    faces: Tensor,
    near: float,
    cull_backfaces: bool,
    min_area_px: float = 1e-8,
) -> Tensor:
    """(B,F) bool: triangles that can be rasterised (see module docstring for the rules)."""
    with torch.no_grad():
        tri_cam = verts_cam[:, faces]  # (B,F,3,3)
        tri_px = verts_px[:, faces]  # (B,F,3,2)
        ok = finite[:, faces].all(dim=-1) & (tri_cam[..., 2] > near).all(dim=-1)
        ok &= torch.isfinite(tri_px).all(dim=-1).all(dim=-1)
        e1, e2 = tri_px[:, :, 1] - tri_px[:, :, 0], tri_px[:, :, 2] - tri_px[:, :, 0]
        area2 = e1[..., 0] * e2[..., 1] - e1[..., 1] * e2[..., 0]
        ok &= area2.abs() > 2 * min_area_px
        if cull_backfaces:
            n = torch.cross(
                tri_cam[:, :, 1] - tri_cam[:, :, 0], tri_cam[:, :, 2] - tri_cam[:, :, 0], dim=-1
            )
            ok &= (n * tri_cam[:, :, 0]).sum(-1) < 0  # normal points towards the camera centre
    return ok


def box_blocks(lo: Tensor, hi: Tensor, height: int, width: int, chunk: int = DEFAULT_CHUNK):
    """Enumerate the integer pixel centres inside screen boxes, in dense blocks.

    Boxes are grouped by size class (the next power of two of their larger side), so each class is
    one broadcast ``(n, S*S)`` grid with little waste and no per-candidate gather; a class is split
    so a block holds at most about `chunk` candidates.

    Args:
        lo, hi: (N,2) box corners in pixels (x, y), inclusive.
        height, width: image size; boxes are clipped to it.
        chunk: candidates per block.

    Yields:
        (idx (n,) int64 rows of the boxes, px (n,S*S) int64, py (n,S*S) int64, valid (n,S*S) bool).
    """
    x0 = torch.ceil(lo[:, 0].clamp(-1, width)).long().clamp(min=0)
    y0 = torch.ceil(lo[:, 1].clamp(-1, height)).long().clamp(min=0)
    x1 = torch.floor(hi[:, 0].clamp(-1, width)).long().clamp(max=width - 1)
    y1 = torch.floor(hi[:, 1].clamp(-1, height)).long().clamp(max=height - 1)
    bw = (x1 - x0 + 1).clamp(min=0)
    bh = (y1 - y0 + 1).clamp(min=0)
    live = (bw > 0) & (bh > 0)
    cls = torch.ceil(torch.log2(torch.maximum(bw, bh).clamp(min=1).double())).long()
    for c in torch.unique(cls[live]).tolist():
        S = 1 << c
        idx_all = (live & (cls == c)).nonzero(as_tuple=True)[0]
        off = torch.arange(S * S, device=lo.device)
        ox, oy = off % S, off // S
        per = max(1, chunk // (S * S))
        for k in range(0, len(idx_all), per):
            idx = idx_all[k : k + per]
            valid = (ox[None] < bw[idx, None]) & (oy[None] < bh[idx, None])
            yield idx, x0[idx, None] + ox[None], y0[idx, None] + oy[None], valid


def triangle_planes(tri_px: Tensor, tri_z: Tensor) -> Tensor:
    """Affine planes of the screen barycentrics and of 1/z over each triangle.

    Barycentrics and inverse depth are affine in screen coordinates, ``val = a*x + b*y + c``, so
    testing a pixel costs three multiply-adds per plane and no gather.

    Args:
        tri_px: (N,3,2) screen vertices.
        tri_z: (N,3) camera depths.

    Returns:
        (N,4,3) coefficients (a, b, c) of planes b0, b1, b2, 1/z.
    """
    p0, p1, p2 = tri_px[:, 0], tri_px[:, 1], tri_px[:, 2]
    area2 = (p1[:, 0] - p0[:, 0]) * (p2[:, 1] - p0[:, 1]) - (p1[:, 1] - p0[:, 1]) * (
        p2[:, 0] - p0[:, 0]
    )
    area2 = torch.where(area2.abs() > 1e-12, area2, torch.full_like(area2, 1e-12))
    planes = []
    for u, v in ((p1, p2), (p2, p0), (p0, p1)):  # the edge opposite each vertex
        a = -(v[:, 1] - u[:, 1])
        b = v[:, 0] - u[:, 0]
        c = -(a * u[:, 0] + b * u[:, 1])
        planes.append(torch.stack([a, b, c], -1) / area2[:, None])
    bary = torch.stack(planes, 1)  # (N,3,3)
    inv_z = (bary / tri_z[:, :, None]).sum(1, keepdim=True)
    return torch.cat([bary, inv_z], 1)


def barycentric_2d(tri_px: Tensor, p: Tensor) -> Tensor:
    """Screen-space barycentrics of points `p` (M,2) w.r.t. triangles `tri_px` (M,3,2) -> (M,3)."""
    a, b, c = tri_px[:, 0], tri_px[:, 1], tri_px[:, 2]

    def edge(u: Tensor, v: Tensor, q: Tensor) -> Tensor:
        return (v[:, 0] - u[:, 0]) * (q[:, 1] - u[:, 1]) - (v[:, 1] - u[:, 1]) * (q[:, 0] - u[:, 0])

    area2 = edge(a, b, c)
    area2 = torch.where(area2.abs() > 1e-12, area2, torch.full_like(area2, 1e-12))
    return torch.stack([edge(b, c, p), edge(c, a, p), edge(a, b, p)], dim=-1) / area2[:, None]


def _ranges(counts: Tensor) -> tuple[Tensor, Tensor]:
    """For counts (N,), return (owner (sum,), position within owner (sum,))."""
    owner = torch.repeat_interleave(torch.arange(len(counts), device=counts.device), counts)
    start = torch.cumsum(counts, 0) - counts
    return owner, torch.arange(len(owner), device=counts.device) - start[owner]


def span_candidates(planes: Tensor, lo: Tensor, hi: Tensor, height: int, width: int, chunk: int):
    """Yield exactly the pixel centres inside each triangle, scanline by scanline.

    On each pixel row a triangle covers one interval of x, found from its three barycentric planes
    (``a*x + b*y + c >= 0``), so candidates cost nothing outside the triangle.

    Args:
        planes: (N,4,3) from `triangle_planes`.
        lo, hi: (N,2) screen bounding boxes.
        height, width: image size.
        chunk: candidates per yielded chunk.

    Yields:
        (tri (M,) rows into planes, px (M,), py (M,)) int64.
    """
    y0 = torch.ceil(lo[:, 1].clamp(-1, height)).long().clamp(min=0)
    y1 = torch.floor(hi[:, 1].clamp(-1, height)).long().clamp(max=height - 1)
    tri_r, dy = _ranges((y1 - y0 + 1).clamp(min=0))
    y = y0[tri_r] + dy
    pl = planes[tri_r, :3]  # (R,3,3)
    a = pl[..., 0]
    rhs = -(pl[..., 1] * y[:, None].to(pl.dtype) + pl[..., 2])  # inside where a*x >= rhs
    rhs = rhs - 1e-6  # barycentric tolerance, so shared edges never leave holes
    inf = torch.full_like(rhs, float("inf"))
    a_safe = torch.where(a == 0, torch.ones_like(a), a)
    lower = torch.where(a > 0, rhs / a_safe, torch.where((a == 0) & (rhs > 0), inf, -inf))
    upper = torch.where(a < 0, rhs / a_safe, inf)
    x_lo = torch.maximum(lower.amax(1), lo[tri_r, 0]).clamp(-1, width)
    x_hi = torch.minimum(upper.amin(1), hi[tri_r, 0]).clamp(-1, width)
    xl = torch.ceil(x_lo).long().clamp(min=0)
    xr = torch.floor(x_hi).long().clamp(max=width - 1)
    n = (xr - xl + 1).clamp(min=0)
    keep = n > 0
    tri_r, y, xl, n = tri_r[keep], y[keep], xl[keep], n[keep]
    ends = torch.cumsum(n, 0)
    first = 0
    while first < len(n):
        base = int(ends[first - 1]) if first else 0
        last = int(
            torch.searchsorted(ends, torch.tensor(base + chunk, device=ends.device), right=True)
        )
        last = max(last, first + 1)
        row, dx = _ranges(n[first:last])
        row = row + first
        yield tri_r[row], xl[row] + dx, y[row]
        first = last


def _zbuffer(
    tri_px: Tensor, tri_z: Tensor, frame: Tensor, n_pix: int, height: int, width: int, chunk: int
) -> Tensor:
    """Nearest triangle per pixel: (B*H*W,) row into `tri_px`, -1 where nothing is drawn."""
    best_z = torch.full((n_pix,), float("inf"), device=tri_px.device, dtype=tri_px.dtype)
    best_row = torch.full((n_pix,), -1, device=tri_px.device, dtype=torch.long)
    planes = triangle_planes(tri_px, tri_z)
    hw = height * width
    for tri, px, py in span_candidates(
        planes, tri_px.amin(1), tri_px.amax(1), height, width, chunk
    ):
        pz = planes[tri, 3]  # (M,3) plane of 1/z
        z = 1.0 / (pz[:, 0] * px.to(pz.dtype) + pz[:, 1] * py.to(pz.dtype) + pz[:, 2])
        key = frame[tri] * hw + py * width + px
        best_z, best_row = _merge_depths(best_z, best_row, key, z, tri)
    return best_row


def _merge_depths(best_z, best_row, key, z, row) -> tuple[Tensor, Tensor]:
    """Fold candidate fragments into the z-buffer (nearest wins; ties go to the larger row)."""
    cz = torch.full_like(best_z, float("inf")).scatter_reduce(0, key, z, "amin")
    win = z <= cz[key]
    crow = torch.full_like(best_row, -1).scatter_reduce(0, key[win], row[win], "amax")
    better = (cz < best_z) | ((cz == best_z) & (crow > best_row))
    return torch.where(better, cz, best_z), torch.where(better, crow, best_row)


def rasterize(
    verts_cam: Tensor,
    faces: Tensor,
    K: Tensor,
    image_size: tuple[int, int],
    cull_backfaces: bool = True,
    near: float = 1e-3,
    chunk: int = DEFAULT_CHUNK,
) -> Fragments:
    """Rasterise a batch of meshes sharing one topology.

    Args:
        verts_cam: (B,V,3) vertices in OpenCV camera space (metres).
        faces: (F,3) int64 vertex indices.
        K: (3,3) or (B,3,3) intrinsics in pixels of the rendered image.
        image_size: (H, W).
        cull_backfaces: drop triangles facing away from the camera (faces wound counter-clockwise
            seen from outside, the FLAME/OBJ convention).
        near: triangles with a vertex at z <= near are dropped.
        chunk: candidate pairs per chunk (memory bound).

    Returns:
        Fragments with differentiable `bary` and `depth`.
    """
    if verts_cam.ndim != 3 or verts_cam.shape[-1] != 3:
        raise ValueError(f"verts_cam must be (B,V,3), got {tuple(verts_cam.shape)}")
    if faces.ndim != 2 or faces.shape[-1] != 3:
        raise ValueError(f"faces must be (F,3), got {tuple(faces.shape)}")
    B = verts_cam.shape[0]
    H, W = int(image_size[0]), int(image_size[1])
    faces = faces.to(verts_cam.device).long()
    verts_cam, finite = sanitize_vertices(verts_cam)
    verts_px = camera_to_pixels(verts_cam, K)
    ok = valid_faces(verts_cam, verts_px, finite, faces, near, cull_backfaces)
    frame, face = ok.nonzero(as_tuple=True)
    with torch.no_grad():
        tri_px = verts_px.detach()[frame[:, None], faces[face]]  # (N,3,2)
        tri_z = verts_cam.detach()[frame[:, None], faces[face], 2]  # (N,3)
        full_row = _zbuffer(tri_px, tri_z, frame, B * H * W, H, W, chunk)
        mask = full_row >= 0
        pix = mask.nonzero(as_tuple=True)[0]
        row = full_row[pix]
        tri_id = torch.full((B * H * W,), -1, dtype=torch.long, device=verts_cam.device)
        tri_id[pix] = face[row]
    return _differentiable_fragments(
        verts_cam, verts_px, faces, pix, frame[row], face[row], tri_id, mask, (B, H, W)
    )


def _differentiable_fragments(
    verts_cam: Tensor,
    verts_px: Tensor,
    faces: Tensor,
    pix: Tensor,
    pix_frame: Tensor,
    pix_face: Tensor,
    tri_id: Tensor,
    mask: Tensor,
    shape: tuple[int, int, int],
) -> Fragments:
    """Recompute barycentrics and depth of covered pixels with autograd on."""
    B, H, W = shape
    vid = faces[pix_face]  # (M,3)
    tri_px = verts_px[pix_frame[:, None], vid]  # (M,3,2)
    z = verts_cam[pix_frame[:, None], vid, 2]  # (M,3)
    rem = pix % (H * W)
    p = torch.stack([rem % W, rem // W], dim=-1).to(verts_px.dtype)
    b = barycentric_2d(tri_px, p)
    bz = b / z
    inv_depth = bz.sum(-1, keepdim=True)
    bary_pc = bz / inv_depth
    depth = 1.0 / inv_depth[:, 0]
    dt = verts_cam.dtype
    bary = torch.zeros(B * H * W, 3, dtype=dt, device=verts_cam.device).index_put((pix,), bary_pc)
    dep = torch.zeros(B * H * W, dtype=dt, device=verts_cam.device).index_put((pix,), depth)
    return Fragments(
        tri_id=tri_id.view(B, H, W),
        bary=bary.view(B, H, W, 3),
        depth=dep.view(B, H, W),
        mask=mask.view(B, H, W),
        pix=pix,
        pix_face=pix_face,
        pix_bary=bary_pc,
    )


def interpolate(attrs: Tensor, faces: Tensor, frags: Fragments) -> Tensor:
    """Interpolate per-vertex attributes with the fragments' barycentrics.

    Args:
        attrs: (V,C) shared or (B,V,C) per-frame vertex attributes.
        faces: (F,3) vertex indices.
        frags: rasterisation result.

    Returns:
        (B,H,W,C), zero where no triangle covers the pixel; differentiable w.r.t. `attrs` and the
        vertex positions behind `frags.bary`.
    """
    B, H, W = frags.mask.shape
    pix = _covered(frags)[0]
    return _scatter_pixels(interpolate_sparse(attrs, faces, frags), pix, (B, H, W))


def interpolate_sparse(attrs: Tensor, faces: Tensor, frags: Fragments) -> Tensor:
    """Like `interpolate`, for the covered pixels only: (M,C) in the order of `frags.pix`."""
    B, H, W = frags.mask.shape
    pix, face, bary = _covered(frags)
    vid = faces.to(face.device)[face]  # (M,3)
    corner = attrs[vid] if attrs.ndim == 2 else attrs[(pix // (H * W))[:, None], vid]
    return (corner * bary[..., None]).sum(1)


def interpolate_corners(corner_attrs: Tensor, frags: Fragments) -> Tensor:
    """Interpolate per-face-corner attributes (F,3,C), e.g. UVs with seams -> (B,H,W,C)."""
    B, H, W = frags.mask.shape
    pix, face, bary = _covered(frags)
    vals = (corner_attrs[face] * bary[..., None]).sum(1)
    return _scatter_pixels(vals, pix, (B, H, W))


def _covered(frags: Fragments) -> tuple[Tensor, Tensor, Tensor]:
    if frags.pix is not None and frags.pix_face is not None and frags.pix_bary is not None:
        return frags.pix, frags.pix_face, frags.pix_bary
    pix = frags.mask.reshape(-1).nonzero(as_tuple=True)[0]
    return pix, frags.tri_id.reshape(-1)[pix], frags.bary.reshape(-1, 3)[pix]


def _scatter_pixels(vals: Tensor, pix: Tensor, shape: tuple[int, int, int]) -> Tensor:
    B, H, W = shape
    out = torch.zeros(B * H * W, vals.shape[-1], dtype=vals.dtype, device=vals.device)
    return out.index_put((pix,), vals).view(B, H, W, -1)
