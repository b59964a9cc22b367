"""Camera conversions from our canonical camera to the conventions of the avatar trainers.

Canonical convention (what flame/tracking.npz stores): OpenCV camera axes (x right, y down,
z forward); ``w2c`` (4,4) maps world points (FLAME space, after ``transl``) to camera points;
``K`` (3,3) is in crop pixels with pixel centres at integer coordinates (pixel (0,0) covers
[-0.5, 0.5]). A world point X lands on pixel ``K @ (w2c @ X)`` after division by depth.

K, the OpenCV/OpenGL flip, rigid inverses and projection come from `prep.models.camera` (their
one home); this module converts to the target conventions (FORMATS.md), here and nowhere else:

- IMAvatar / HRAvatar: ``world_mat`` is world-to-camera in OpenGL camera axes (x right, y up,
  z backward) with identity rotation; the head rotation lives in the FLAME global pose; FLAME
  vertices are multiplied by 4; ``intrinsics = [-fx/w, fy/h, cx/w, cy/h]`` (fx stored negated, so
  ``u = fx_s * x / z + cx`` with z < 0 gives the usual pixel). Integer pixel centres.
- INSTA (instant-ngp lineage): ``transform_matrix`` is camera-to-world in OpenCV axes; rays go
  through pixel centres at ``x + 0.5``, so the principal point is shifted by +0.5 px.
- GaussianAvatars / VHAP: camera-to-world in OpenGL axes (flip y and z of OpenCV). VHAP writes
  ``cx, cy`` with pixel centres at ``x + 0.5`` (its nvdiffrast projection, ``cx = w / 2`` for a
  centred camera); GaussianAvatars ignores them and renders with a symmetric frustum whose axis
  lands on pixel ``(W - 1) / 2`` of our convention (its rasteriser maps NDC to pixels with
  ``((v + 1) * S - 1) / 2``), so its images must be re-cropped around the principal point
  (`resample_maps`).
- HRAvatar reads IMAvatar-style ``world_mat`` (4x4) but builds its field of view from ``cx`` and
  renders like GaussianAvatars: a centred principal point and ``fy = fx``.
- AD-NeRF (BFM path): the face tracker gives ``euler`` (its ``euler2rot`` builds
  R = Rx(e0) Ry(e1) Rz(-e2): its z matrix is the transpose of the usual one) and ``trans`` for
  x = R X + t in an OpenGL camera (``u = -f x / z + cx``, ``v = f y / z + cy``); the NeRF pose is
  the camera-to-world inverse of ``[R | t / 10]``. Integer pixel centres.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial.transform import Rotation

from prep.models.camera import CV_TO_GL, K_matrix, invert_rigid, opencv_to_opengl_c2w, project_np

INSTA_PIXEL_OFFSET = 0.5  # instant-ngp samples rays at (x + 0.5) / w
VHAP_PIXEL_OFFSET = 0.5  # VHAP's cx, cy put pixel centres at x + 0.5 (cx = w / 2 when centred)
IMAVATAR_SCALE = 4.0  # IMAvatar multiplies FLAME vertices by 4
ADNERF_TRANS_SCALE = 10.0  # AD-NeRF divides the tracker translation by 10


def c2w_opencv_to_opengl(c2w: np.ndarray) -> np.ndarray:
    """Camera-to-world with OpenCV camera axes -> OpenGL camera axes (and back): (...,4,4)."""
    return opencv_to_opengl_c2w(np.asarray(c2w, np.float64))


c2w_opengl_to_opencv = c2w_opencv_to_opengl
rigid_inverse = invert_rigid
k_matrix = K_matrix
project_opencv = project_np


def intrinsics_of(K: np.ndarray) -> tuple[float, float, float, float]:
    """(fx, fy, cx, cy) of a (3,3) pinhole matrix."""
    return float(K[0, 0]), float(K[1, 1]), float(K[0, 2]), float(K[1, 2])


def centred_K(focal: np.ndarray, image_size) -> np.ndarray:
    """(T,3,3) intrinsics with ``fx = fy = focal`` and the principal point at the image centre.

    Args:
        focal: (T,) focal lengths in pixels.
        image_size: (h, w); the centre is ``((w - 1) / 2, (h - 1) / 2)`` (integer pixel centres).
    """
    h, w = (float(v) for v in image_size)
    f = np.asarray(focal, np.float64).reshape(-1)
    return K_matrix(f, f, (w - 1) / 2, (h - 1) / 2)


def resample_maps(
    K_frames: np.ndarray, image_size, centre: bool, per_frame_focal: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Maps from crop pixels to exported pixels that give every frame the camera a consumer needs.

    A pinhole camera re-cropped (shifted and scaled in the image) stays a pinhole camera:
    ``K_out = D @ K`` for the affine ``D`` that moves the pixels. Consumers that ignore ``cx, cy``
    (GaussianAvatars, HRAvatar) need the principal point at the centre and ``fy = fx``; consumers
    that hold one camera for all frames (IMAvatar, HRAvatar, INSTA) need one ``K`` even when the
    crop moved (``crop.mode=smooth``). A static crop that already suits the consumer keeps ``D = I``
    (the images are copied, not resampled).

    Args:
        K_frames: (T,3,3) crop-pixel intrinsics per frame.
        image_size: (h, w) of the crop (kept for the exported images).
        centre: put the principal point at the image centre, with ``fy = fx``.
        per_frame_focal: keep each frame's focal length (GaussianAvatars reads one per frame);
            otherwise every frame gets the median focal.

    Returns:
        ``(D (T,3,3), K_out (T,3,3))``, ``K_out = D @ K_frames``.
    """
    K_frames = np.asarray(K_frames, np.float64)
    static = np.allclose(K_frames, K_frames[:1], atol=1e-6)
    if static and not centre:
        return np.tile(np.eye(3), (len(K_frames), 1, 1)), K_frames.copy()
    fx = K_frames[:, 0, 0]
    f = fx if per_frame_focal else np.full(len(fx), float(np.median(fx)))
    K_out = centred_K(f, image_size)
    return K_out @ np.linalg.inv(K_frames), K_out


def relocate_world(w2c: np.ndarray, transl: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Move the world origin to the mean head position, as VHAP's exporter does.

    The head then sits near the origin of the consumer's world (the NeRF-style trainers bound
    their scene there); cameras move with it, so every projection is unchanged.

    Args:
        w2c: (T,4,4) world-to-camera. transl: (T,3) FLAME translation in world units.

    Returns:
        ``(w2c', transl')`` with ``transl' = transl - mean`` and ``w2c' = w2c @ [I | mean]``.
    """
    mean = np.asarray(transl, np.float64).mean(0)
    shift = np.eye(4)
    shift[:3, 3] = mean
    return np.asarray(w2c, np.float64) @ shift, np.asarray(transl, np.float64) - mean


# ---- INSTA and GaussianAvatars: camera-to-world ------------------------------------------------


@dataclass
class NerfCamera:
    """A camera-to-world camera as nerf-style transforms.json files store it.

    Attributes:
        c2w: (T,4,4) camera-to-world in the target's camera axes.
        fl_x, fl_y, cx, cy: intrinsics in pixels, in the target's pixel-centre convention.
        w, h: image size in pixels.
        opengl: camera axes are OpenGL (x right, y up, z backward) rather than OpenCV.
        pixel_offset: target pixel coordinate minus canonical pixel coordinate of the same point.
    """

    c2w: np.ndarray
    fl_x: float
    fl_y: float
    cx: float
    cy: float
    w: int
    h: int
    opengl: bool
    pixel_offset: float

    @property
    def camera_angle_x(self) -> float:
        """Horizontal field of view in radians."""
        return float(2.0 * np.arctan(self.w / (2.0 * self.fl_x)))

    @property
    def camera_angle_y(self) -> float:
        """Vertical field of view in radians."""
        return float(2.0 * np.arctan(self.h / (2.0 * self.fl_y)))


def _nerf_camera(w2c, K, image_size, opengl: bool, offset: float) -> NerfCamera:
    h, w = (int(v) for v in image_size)
    fx, fy, cx, cy = intrinsics_of(K)
    c2w = rigid_inverse(np.asarray(w2c, dtype=np.float64))
    if opengl:
        c2w = c2w_opencv_to_opengl(c2w)
    return NerfCamera(c2w, fx, fy, cx + offset, cy + offset, w, h, opengl, offset)


def to_insta(w2c: np.ndarray, K: np.ndarray, image_size) -> NerfCamera:
    """Canonical (w2c (T,4,4), K (3,3), image_size (h,w)) -> INSTA camera (c2w, OpenCV)."""
    return _nerf_camera(w2c, K, image_size, opengl=False, offset=INSTA_PIXEL_OFFSET)


def to_gaussianavatars(w2c: np.ndarray, K: np.ndarray, image_size) -> NerfCamera:
    """Canonical -> GaussianAvatars/VHAP camera (c2w, OpenGL axes, VHAP's half-pixel cx, cy)."""
    return _nerf_camera(w2c, K, image_size, opengl=True, offset=VHAP_PIXEL_OFFSET)


def nerf_camera_to_canonical(cam: NerfCamera) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of `to_insta` / `to_gaussianavatars`: returns (w2c (T,4,4) OpenCV, K (3,3))."""
    c2w = c2w_opengl_to_opencv(cam.c2w) if cam.opengl else np.asarray(cam.c2w, np.float64)
    off = cam.pixel_offset
    return rigid_inverse(c2w), k_matrix(cam.fl_x, cam.fl_y, cam.cx - off, cam.cy - off)


def project_nerf_camera(points_w: np.ndarray, cam: NerfCamera) -> np.ndarray:
    """Project (T,N,3) world points the way the target tool does: (T,N,2) target pixels."""
    w2c = rigid_inverse(cam.c2w)
    x = points_w @ np.swapaxes(w2c[..., :3, :3], -1, -2) + w2c[..., None, :3, 3]
    if cam.opengl:  # camera looks down -z, y up
        u = cam.cx + cam.fl_x * x[..., 0] / -x[..., 2]
        v = cam.cy - cam.fl_y * x[..., 1] / -x[..., 2]
    else:
        u = cam.cx + cam.fl_x * x[..., 0] / x[..., 2]
        v = cam.cy + cam.fl_y * x[..., 1] / x[..., 2]
    return np.stack([u, v], axis=-1)


# ---- IMAvatar / HRAvatar -------------------------------------------------------------------


@dataclass
class ImavatarCamera:
    """IMAvatar-convention cameras and the FLAME rigid pose they imply.

    Attributes:
        world_mat: (3,4) shared world-to-camera, OpenGL axes, identity rotation, x4 units.
        intrinsics: (4,) ``[-fx/w, fy/h, cx/w, cy/h]``.
        global_pose: (T,3) FLAME global rotation (axis-angle) with the camera rotation folded in.
        transl: (T,3) FLAME-unit translation left after the shared camera translation
            (HRAvatar stores it per frame; IMAvatar reads no such field, so its per-frame
            ``world_mat`` carries it: `world_mats`).
    """

    world_mat: np.ndarray
    intrinsics: np.ndarray
    global_pose: np.ndarray
    transl: np.ndarray

    def world_mats(self) -> np.ndarray:
        """(T,3,4) per-frame ``[I | t_shared + 4 transl_t]``: IMAvatar builds each frame's camera
        from its own ``world_mat`` (real_dataset.py:87, train.py:148) and has no translation
        field, so the head's motion relative to the shared camera goes into the camera."""
        mats = np.repeat(self.world_mat[None], len(self.transl), 0)
        mats[:, :, 3] += IMAVATAR_SCALE * np.asarray(self.transl, np.float64)
        return mats


def imavatar_intrinsics(K: np.ndarray, image_size) -> np.ndarray:
    """(3,3) K in pixels -> IMAvatar's normalised ``[-fx/w, fy/h, cx/w, cy/h]``."""
    h, w = (float(v) for v in image_size)
    fx, fy, cx, cy = intrinsics_of(K)
    return np.array([-fx / w, fy / h, cx / w, cy / h])


def imavatar_K(intrinsics: np.ndarray, image_size) -> np.ndarray:
    """Inverse of `imavatar_intrinsics`: (3,3) K in pixels (positive fx)."""
    h, w = (float(v) for v in image_size)
    return k_matrix(-intrinsics[0] * w, intrinsics[1] * h, intrinsics[2] * w, intrinsics[3] * h)


def to_imavatar(
    w2c: np.ndarray,
    K: np.ndarray,
    image_size,
    global_pose: np.ndarray,
    transl: np.ndarray,
    root_joint: np.ndarray,
) -> ImavatarCamera:
    """Re-express canonical cameras as IMAvatar's identity-rotation camera.

    The per-frame camera rotation and translation are folded into the FLAME rigid motion: the
    root joint rotation becomes ``R_gl @ R_root`` and the translation is chosen so that every
    posed vertex v satisfies ``R_gl v + t_gl = v' + t_shared``. The shared camera translation is
    the mean over frames (IMAvatar's optimisation shares it too).

    Args:
        w2c: (T,4,4) canonical world-to-camera (OpenCV).
        K: (3,3) crop-pixel intrinsics.
        image_size: (h, w) of the crop.
        global_pose: (T,3) canonical FLAME global rotation, axis-angle.
        transl: (T,3) canonical FLAME translation (metres).
        root_joint: (3,) or (T,3) FLAME root joint of the rest mesh (rotation centre; FLAME
            regresses it from shape AND expression, so it moves a little per frame).

    Returns:
        ImavatarCamera.
    """
    w2c = np.asarray(w2c, np.float64)
    r_gl = CV_TO_GL @ w2c[:, :3, :3]  # (T,3,3)
    t_gl = w2c[:, :3, 3] @ CV_TO_GL  # CV_TO_GL is diagonal, so this is CV_TO_GL @ t
    r_root = Rotation.from_rotvec(np.asarray(global_pose, np.float64)).as_matrix()
    new_pose = Rotation.from_matrix(r_gl @ r_root).as_rotvec()
    j = np.broadcast_to(np.asarray(root_joint, np.float64), t_gl.shape)
    # v = R_root (v_loc - J) + J + transl  ->  R_gl v + t_gl = (R_gl R_root)(v_loc - J) + J + T'
    moved = np.einsum("tij,tj->ti", r_gl, j + np.asarray(transl, np.float64)) + t_gl - j
    t_shared = moved.mean(axis=0)
    world_mat = np.concatenate([np.eye(3), IMAVATAR_SCALE * t_shared[:, None]], axis=1)
    return ImavatarCamera(world_mat, imavatar_intrinsics(K, image_size), new_pose, moved - t_shared)


def project_imavatar(points_flame: np.ndarray, cam: ImavatarCamera, image_size) -> np.ndarray:
    """Project FLAME-space points the way IMAvatar does (one shared ``world_mat``).

    Args:
        points_flame: (T,N,3) posed FLAME points (with `cam.transl` added, before the x4 scale).
        cam: ImavatarCamera.
        image_size: (h, w).

    Returns:
        (T,N,2) pixels.
    """
    h, w = (float(v) for v in image_size)
    x = IMAVATAR_SCALE * points_flame @ cam.world_mat[:, :3].T + cam.world_mat[:, 3]
    fx, fy, cx, cy = cam.intrinsics * np.array([w, h, w, h])
    return np.stack([fx * x[..., 0] / x[..., 2] + cx, fy * x[..., 1] / x[..., 2] + cy], -1)


# ---- AD-NeRF (BFM path) --------------------------------------------------------------------


def euler_to_matrix(euler: np.ndarray) -> np.ndarray:
    """AD-NeRF Euler angles (T,3) radians -> rotations (T,3,3), R = Rx(e0) Ry(e1) Rz(-e2)."""
    e = np.asarray(euler, np.float64) * [1.0, 1.0, -1.0]
    return Rotation.from_euler("XYZ", e).as_matrix()


def matrix_to_euler(r: np.ndarray) -> np.ndarray:
    """Inverse of `euler_to_matrix`: (T,3,3) -> (T,3)."""
    return Rotation.from_matrix(np.asarray(r, np.float64)).as_euler("XYZ") * [1.0, 1.0, -1.0]


def adnerf_to_opencv(euler, trans, focal: float, cx: float, cy: float):
    """AD-NeRF tracker camera -> canonical (w2c (T,4,4) OpenCV, K (3,3))."""
    n = len(euler)
    w2c = np.tile(np.eye(4), (n, 1, 1))
    w2c[:, :3, :3] = CV_TO_GL @ euler_to_matrix(euler)
    w2c[:, :3, 3] = np.asarray(trans, np.float64) @ CV_TO_GL
    # AD-NeRF's u = -f x_gl / z_gl + cx equals f x_cv / z_cv + cx.
    return w2c, k_matrix(focal, focal, cx, cy)


def adnerf_poses(euler: np.ndarray, trans: np.ndarray) -> np.ndarray:
    """AD-NeRF ``transform_matrix``: c2w (T,4,4), OpenGL axes, translation divided by 10."""
    n = len(euler)
    w2c = np.tile(np.eye(4), (n, 1, 1))
    w2c[:, :3, :3] = euler_to_matrix(euler)
    w2c[:, :3, 3] = np.asarray(trans, np.float64) / ADNERF_TRANS_SCALE
    return rigid_inverse(w2c)


def adnerf_from_poses(c2w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of `adnerf_poses`: (euler (T,3), trans (T,3) in tracker units)."""
    w2c = rigid_inverse(np.asarray(c2w, np.float64))
    return matrix_to_euler(w2c[:, :3, :3]), w2c[:, :3, 3] * ADNERF_TRANS_SCALE


def project_adnerf(points: np.ndarray, c2w: np.ndarray, focal: float, cx: float, cy: float):
    """Project (T,N,3) points (scaled by 1/10, as the NeRF sees them) through AD-NeRF poses."""
    w2c = rigid_inverse(c2w)
    x = points @ np.swapaxes(w2c[:, :3, :3], -1, -2) + w2c[:, None, :3, 3]
    return np.stack([-focal * x[..., 0] / x[..., 2] + cx, focal * x[..., 1] / x[..., 2] + cy], -1)
