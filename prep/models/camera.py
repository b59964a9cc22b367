"""Pinhole camera, torch and numpy: K, the OpenCV/OpenGL flip, rigid inverses, projection.

Convention (used by every geometry module in `prep`):
- Camera axes are OpenCV's: x right, y down, z forward (into the scene). A point is visible
  when its camera-space z is positive.
- ``w2c (..., 4, 4)`` maps world points to camera space: ``x_cam = R @ x_world + t``;
  ``c2w`` is its inverse. OpenGL/Blender cameras (y up, z backward) differ by a flip of the
  camera's y and z axes: ``c2w_opengl = c2w_opencv @ diag(1, -1, -1, 1)``.
- ``K (..., 3, 3)`` = [[fx, 0, cx], [0, fy, cy], [0, 0, 1]] in pixels. Pixel centres sit at
  integer coordinates: pixel (0, 0) covers [-0.5, 0.5] x [-0.5, 0.5], so an image of width W has
  its centre at cx = (W - 1) / 2.
- Image sizes are given as ``(h, w)``.

This is the one home of these conventions (tests/test_conventions.py). torch is imported by the
functions that need it, so numpy-only users (the crop stages) do not load it.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, TypeGuard

import numpy as np

if TYPE_CHECKING:
    import torch

# Camera y and z negated: OpenCV <-> OpenGL axes (an involution), and FLAME space (y up, z out of
# the face) -> the camera that looks at the face from the front.
FLIP_YZ = (1.0, -1.0, -1.0)
OPENGL_FROM_OPENCV = np.diag([*FLIP_YZ, 1.0])
CV_TO_GL = OPENGL_FROM_OPENCV[:3, :3]


def flip_yz(points):
    """Points ``(..., 3)`` (torch or numpy) with y and z negated (`FLIP_YZ`)."""
    if _is_torch(points):
        return points * points.new_tensor(FLIP_YZ)
    return np.asarray(points) * np.asarray(FLIP_YZ)


def frontal_w2c() -> np.ndarray:
    """``(4, 4)`` world-to-camera of a camera at the origin facing FLAME's face: the y/z flip."""
    return OPENGL_FROM_OPENCV.copy()


def _is_torch(x) -> TypeGuard[torch.Tensor]:
    return type(x).__module__.split(".")[0] == "torch"


def make_K(fx, fy, cx, cy, dtype=None, device=None) -> torch.Tensor:
    """Intrinsics from scalars or tensors of shape ``(...)`` -> ``(..., 3, 3)`` (float32 unless
    `dtype` says otherwise)."""
    import torch

    dtype = torch.float32 if dtype is None else dtype
    fx, fy, cx, cy = (torch.as_tensor(v, dtype=dtype, device=device) for v in (fx, fy, cx, cy))
    fx, fy, cx, cy = torch.broadcast_tensors(fx, fy, cx, cy)
    o, i = torch.zeros_like(fx), torch.ones_like(fx)
    return torch.stack([fx, o, cx, o, fy, cy, o, o, i], -1).reshape(fx.shape + (3, 3))


def K_matrix(fx, fy, cx, cy) -> np.ndarray:
    """Pinhole intrinsics (numpy twin of `make_K`): scalars or arrays ``(...)`` -> ``(..., 3, 3)``
    float64."""
    fx, fy, cx, cy = np.broadcast_arrays(*(np.asarray(v, np.float64) for v in (fx, fy, cx, cy)))
    K = np.zeros(fx.shape + (3, 3))
    K[..., 0, 0], K[..., 1, 1], K[..., 0, 2], K[..., 1, 2] = fx, fy, cx, cy
    K[..., 2, 2] = 1.0
    return K


def project_np(points: np.ndarray, w2c: np.ndarray, K: np.ndarray) -> np.ndarray:
    """Numpy `project`: world points ``(..., N, 3)`` through ``w2c (..., 4, 4)`` and
    ``K (..., 3, 3)`` -> pixels ``(..., N, 2)``."""
    x_cam = points @ np.swapaxes(w2c[..., :3, :3], -1, -2) + w2c[..., None, :3, 3]
    uvw = x_cam @ np.swapaxes(np.asarray(K, np.float64), -1, -2)
    return uvw[..., :2] / uvw[..., 2:3]


def default_K(image_size: tuple[int, int], fov_deg: float = 20.0) -> np.ndarray:
    """Intrinsics of a centred camera with horizontal field of view `fov_deg`; ``(3, 3)`` float64.

    Args:
        image_size: ``(h, w)`` in pixels.
        fov_deg: horizontal field of view in degrees.
    """
    h, w = image_size
    f = focal_from_fov(fov_deg, w)
    return K_matrix(f, f, (w - 1) / 2, (h - 1) / 2)


def resize_affine(sx: float, sy: float) -> np.ndarray:
    """``(3, 3)`` pixel map of an image resized by ``(sx, sy)``, pixel centres at integers.

    Pixel edges scale, so ``x' = sx (x + 0.5) - 0.5`` (same in y); intrinsics follow as
    ``resize_affine(sx, sy) @ K`` (`rescale_intrinsics` is the torch form).
    """
    return np.array([[sx, 0.0, 0.5 * sx - 0.5], [0.0, sy, 0.5 * sy - 0.5], [0.0, 0.0, 1.0]])


def focal_from_fov(fov_deg: float, size_px: float) -> float:
    """Focal length in pixels for a field of view `fov_deg` across `size_px` pixels."""
    return 0.5 * size_px / math.tan(math.radians(fov_deg) / 2)


def fov_from_focal(focal_px: float, size_px: float) -> float:
    """Field of view in degrees across `size_px` pixels for focal length `focal_px`."""
    return math.degrees(2 * math.atan(0.5 * size_px / focal_px))


def transform_points(T: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Apply rigid/affine transforms ``T (..., 4, 4)`` to points ``(..., N, 3)``."""
    return points @ T[..., :3, :3].transpose(-1, -2) + T[..., None, :3, 3]


def project(
    points_world: torch.Tensor, K: torch.Tensor, w2c: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Project world points to pixels.

    Args:
        points_world: ``(..., N, 3)`` points (world space, or camera space when `w2c` is None).
        K: ``(..., 3, 3)`` or ``(3, 3)`` intrinsics in pixels.
        w2c: ``(..., 4, 4)`` world-to-camera transforms (OpenCV axes), or None.

    Returns:
        ``(xy_px (..., N, 2), depth (..., N))``: pixel coordinates and camera-space z.
    """
    import torch

    x_cam = points_world if w2c is None else transform_points(w2c, points_world)
    uvw = x_cam @ K.transpose(-1, -2)  # as `project_np`: (u w, v w, w), w = z for a pinhole K
    w = uvw[..., 2:3]
    w = torch.where(w.abs() < 1e-9, torch.full_like(w, 1e-9), w)
    return uvw[..., :2] / w, x_cam[..., 2]


def unproject(xy_px: torch.Tensor, depth: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
    """Pixels ``(..., N, 2)`` and camera z ``(..., N)`` -> camera-space points ``(..., N, 3)``."""
    import torch

    fx, fy = K[..., 0, 0, None], K[..., 1, 1, None]
    cx, cy = K[..., 0, 2, None], K[..., 1, 2, None]
    skew = K[..., 0, 1, None]
    y = (xy_px[..., 1] - cy) / fy
    x = (xy_px[..., 0] - cx - skew * y) / fx
    return torch.stack([x * depth, y * depth, depth], -1)


def invert_rigid(T: np.ndarray | torch.Tensor):
    """Inverse of rigid transforms ``(..., 4, 4)`` (numpy or torch), without a general inverse."""
    if _is_torch(T):
        R, t = T[..., :3, :3], T[..., :3, 3:]
        Rt = R.transpose(-1, -2)
        out = T.new_zeros(T.shape)
        out[..., :3, :3] = Rt
        out[..., :3, 3:] = -Rt @ t
        out[..., 3, 3] = 1
        return out
    A = np.asarray(T)
    Rt_np = np.swapaxes(A[..., :3, :3], -1, -2)
    inv = np.zeros_like(A)
    inv[..., :3, :3] = Rt_np
    inv[..., :3, 3:] = -Rt_np @ A[..., :3, 3:]
    inv[..., 3, 3] = 1
    return inv


def opencv_to_opengl_c2w(c2w_opencv: np.ndarray) -> np.ndarray:
    """Camera-to-world ``(..., 4, 4)`` in OpenCV axes -> OpenGL axes (flip camera y and z)."""
    return np.asarray(c2w_opencv) @ OPENGL_FROM_OPENCV


def opengl_to_opencv_c2w(c2w_opengl: np.ndarray) -> np.ndarray:
    """Camera-to-world ``(..., 4, 4)`` in OpenGL axes -> OpenCV axes."""
    return np.asarray(c2w_opengl) @ OPENGL_FROM_OPENCV


def K_through_affine(K: np.ndarray, A: np.ndarray) -> np.ndarray:
    """Intrinsics after an image-space affine map.

    When pixels are mapped by ``p' = A @ p`` (homogeneous, ``A (..., 3, 3)``, e.g. a crop and
    resize from original to crop pixels), the camera's intrinsics become ``A @ K``. The result is
    a plain pinhole K only when A has no rotation or shear (crops and scales); otherwise it
    carries a skew term that `project` honours.

    Args:
        K: ``(..., 3, 3)`` intrinsics in source pixels.
        A: ``(..., 3, 3)`` source-to-target pixel map.

    Returns:
        ``(..., 3, 3)`` intrinsics in target pixels.
    """
    return np.asarray(A, dtype=np.float64) @ np.asarray(K, dtype=np.float64)


def crop_intrinsics(
    fx: float, fy: float, cx: float, cy: float, orig_to_crop: np.ndarray
) -> np.ndarray:
    """Intrinsics given in original-video pixels -> crop pixels, ``(..., 3, 3)``.

    Args:
        fx, fy, cx, cy: intrinsics in original pixels; fx, fy must be positive.
        orig_to_crop: ``(..., 3, 3)`` maps original pixels to crop pixels.
    """
    if fx <= 0 or fy <= 0:
        raise ValueError(f"focal lengths must be positive, got fx={fx}, fy={fy}")
    return K_through_affine(K_matrix(fx, fy, cx, cy), orig_to_crop)


def shared_or_per_frame(K: np.ndarray, atol: float = 1e-6) -> np.ndarray:
    """``(T, 3, 3)`` intrinsics -> one ``(3, 3)`` when every frame has it, else unchanged."""
    K = np.asarray(K)
    return K[0] if np.allclose(K, K[:1], atol=atol) else K


def intrinsics_for(K: np.ndarray, idx) -> np.ndarray:
    """Intrinsics of frames `idx` from a shared ``(3, 3)`` or per-frame ``(T, 3, 3)`` K.

    Returns ``(3, 3)`` for a shared K (it broadcasts), else ``K[idx]``.
    """
    K = np.asarray(K, dtype=np.float64)
    return K if K.ndim == 2 else K[idx]


def rescale_intrinsics(K: torch.Tensor, src_hw, dst_hw) -> torch.Tensor:
    """Intrinsics ``(..., 3, 3)`` for the same view rendered at `dst_hw` instead of `src_hw`.

    Pixel centres stay at integer coordinates (pixel (0, 0) covers [-0.5, 0.5]).
    """
    K = K.clone()
    for r, s in ((0, dst_hw[1] / src_hw[1]), (1, dst_hw[0] / src_hw[0])):
        K[..., r, r] *= s
        K[..., r, 2] = s * (K[..., r, 2] + 0.5) - 0.5
    return K


def look_at_w2c(eye: np.ndarray, target: np.ndarray, up=(0.0, 1.0, 0.0)) -> np.ndarray:
    """World-to-camera ``(4, 4)`` (OpenCV axes) of a camera at `eye` looking at `target`.

    `up` is the world direction that appears upwards in the image (camera -y).
    """
    eye, target, up = (np.asarray(v, dtype=np.float64) for v in (eye, target, up))
    z = target - eye
    z /= np.linalg.norm(z)
    x = np.cross(-up, z)
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    R = np.stack([x, y, z])
    w2c = np.eye(4)
    w2c[:3, :3] = R
    w2c[:3, 3] = -R @ eye
    return w2c
