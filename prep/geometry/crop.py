"""Square face crops: the orig<->crop transforms, intrinsics, warping (boxes: `crop_boxes`).

Convention (stated once for the project's image space): OpenCV axes (x right, y down), pixel
centres at INTEGER coordinates; pixel (0, 0) covers [-0.5, 0.5]^2, so a W x H image spans
[-0.5, W - 0.5] x [-0.5, H - 0.5]. A crop box (x0, y0, x1, y1) is given by its edges in original
pixels and maps onto an N x N crop whose edges are -0.5 and N - 0.5:

    u = a * (x - x0) - 0.5,  a = N / (x1 - x0)        (same for v, y)

so `orig_to_crop` = [[a, 0, -a x0 - 0.5], [0, a, -a y0 - 0.5], [0, 0, 1]]. This is the convention
cv2.warpAffine uses, so warping with it is exact. Intrinsics (pinhole, same convention) follow
by matrix product: K_crop = orig_to_crop @ K_orig and K_orig = crop_to_orig @ K_crop, exactly.

crop/crop.npz keys (T frames):
    orig_to_crop (T,3,3) float64   original pixels -> crop pixels
    crop_to_orig (T,3,3) float64   its inverse
    box_xyxy (T,4) float64         crop box edges, original pixels (may extend past the frame)
    image_size int                 N, side of the square crop
    valid (T,) bool                the subject's face was detected (or interpolated) there
    orig_hw (2,) int               (h, w) of the original frames
    frame_names (T,) str           original frame file names
    mode str                       static | smooth | per_image (a photo collection)
    inframe_xyxy (T,4) float64     the original frame's rectangle in crop pixels (edges), clipped
                                   to the crop: pixels whose centre lies in [x0, x1) x [y0, y1)
                                   show the frame, the rest lies outside it (`inframe_mask`)

Pixels outside the original frame are not there: with ``crop.pad=constant`` (the default) they
hold ``crop.pad_value`` exactly, and the mattes, parsing labels and masks are 0 there, so
albedo and photometric terms never see them. With ``crop.inside_frame=true`` the box is moved
(and shrunk to the frame's shorter side when larger) so that it stays inside the frame.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property

import cv2
import numpy as np

from prep.models.camera import K_matrix, resize_affine


@dataclass
class CropTransforms:
    """Per-frame crop transforms of one clip (see the module docstring for the keys)."""

    orig_to_crop: np.ndarray
    crop_to_orig: np.ndarray
    box_xyxy: np.ndarray
    image_size: int
    valid: np.ndarray
    orig_hw: np.ndarray
    frame_names: np.ndarray
    mode: str
    # source video pixels -> extracted-frame pixels (the ingest's cut box; set by `load`)
    source_to_frame: np.ndarray = field(default_factory=lambda: np.eye(3))
    source_hw: np.ndarray | None = None  # (h, w) of the source video (orig_hw when not cut)
    crop_hw: tuple[int, int] | None = None  # (h, w) of the face frames ((N, N) for a crop)

    def __post_init__(self):
        if self.source_hw is None:
            self.source_hw = np.asarray(self.orig_hw)
        if self.crop_hw is None:
            self.crop_hw = (self.image_size, self.image_size)

    @cached_property
    def inframe_rects(self) -> np.ndarray:
        """(T, 4) the original frame's rectangle in crop pixels (see `inframe_xyxy`)."""
        return inframe_xyxy(self.orig_to_crop, tuple(self.orig_hw), self.image_size)

    def inframe_mask(self, i: int) -> np.ndarray:
        """(N, N) bool: the pixels of crop frame `i` that show the original frame."""
        return inframe_mask(self.inframe_rects[i], self.image_size)

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {
            "orig_to_crop": self.orig_to_crop,
            "crop_to_orig": self.crop_to_orig,
            "box_xyxy": self.box_xyxy,
            "image_size": np.asarray(self.image_size),
            "valid": self.valid,
            "orig_hw": np.asarray(self.orig_hw),
            "frame_names": np.asarray(self.frame_names, dtype=str),
            "mode": np.asarray(self.mode),
            "inframe_xyxy": self.inframe_rects,
        }

    @staticmethod
    def from_arrays(d: dict[str, np.ndarray]) -> CropTransforms:
        """Read the arrays back; optional keys (orig_hw, frame_names, mode) get defaults."""
        size = np.asarray(d["image_size"]).reshape(-1)
        box = np.asarray(d["box_xyxy"], np.float64)
        hw = d.get("orig_hw", np.array([box[0, 3] - box[0, 1], box[0, 2] - box[0, 0]]).round())
        names = d.get("frame_names", np.array([f"{i:06d}" for i in range(len(box))]))
        return CropTransforms(
            np.asarray(d["orig_to_crop"], np.float64),
            np.asarray(d["crop_to_orig"], np.float64),
            box,
            int(size[0]),
            d["valid"].astype(bool),
            np.asarray(hw).astype(int),
            names,
            str(d.get("mode", "static")),
            crop_hw=(int(size[0]), int(size[-1])),  # an ingest's identity crop may be (h, w)
        )

    @classmethod
    def load(cls, subject) -> CropTransforms:
        """crop/crop.npz of `subject` (a `prep.subject.SubjectDir`): the one reader of that file.

        The transforms map the extracted frames (frames/) to the crop. When the ingest cut a box
        out of the source video (HDTF's annotations: meta/video.json ``crop_xywh``), the box's
        offset is composed in `source_to_crop`, which maps the source video's pixels (those of
        user-given intrinsics); `source_hw` is then the source video's size.

        Raises:
            MissingInputError: no crop.npz (run stage crop).
        """
        from prep.errors import MissingInputError
        from prep.io.files import load_npz, read_json

        if not subject.crop_npz.exists():
            raise MissingInputError("crop", subject.crop_npz)
        ct = cls.from_arrays(load_npz(subject.crop_npz))
        meta = read_json(subject.video_json) if subject.video_json.exists() else {}
        box = meta.get("crop_xywh")
        if box:
            ct.source_to_frame = np.array([[1, 0, -box[0]], [0, 1, -box[1]], [0, 0, 1.0]])
            probe = meta.get("probe") or {}
            if probe.get("width"):
                ct.source_hw = np.array([probe["height"], probe["width"]], np.int64)
        return ct

    @property
    def source_to_crop(self) -> np.ndarray:
        """(T,3,3) source video pixels -> crop pixels (the box offset composed)."""
        return self.orig_to_crop @ self.source_to_frame


def inframe_reader(subject) -> Callable[[int], np.ndarray | None]:
    """Per-frame in-frame masks of the face frames: ``reader(i)`` is (N, N) bool, True where crop
    frame `i` shows the original frame, or None when the face frames are the original frames.

    Reads crop/crop.npz once (`subject`: a `prep.subject.SubjectDir`). For the stages after crop
    and for the exports: pixels where it is False are padding (alpha and mask 0, image/ holds
    ``crop.pad_value``).
    """
    if not (subject.crop_npz.exists() and subject.crop_dir.is_dir()):
        return lambda i: None
    return CropTransforms.load(subject).inframe_mask


def box_to_orig_to_crop(box_xyxy: np.ndarray, size: int) -> np.ndarray:
    """Affine maps of square boxes onto an N x N crop.

    Args:
        box_xyxy: (T, 4) box edges, original pixels (x1 - x0 == y1 - y0 expected).
        size: N, crop side in pixels.

    Returns:
        (T, 3, 3) float64 orig_to_crop.
    """
    box = np.asarray(box_xyxy, np.float64)
    a = size / (box[:, 2] - box[:, 0])
    b = size / (box[:, 3] - box[:, 1])
    M = np.zeros((len(box), 3, 3))
    M[:, 0, 0], M[:, 0, 2] = a, -a * box[:, 0] - 0.5
    M[:, 1, 1], M[:, 1, 2] = b, -b * box[:, 1] - 0.5
    M[:, 2, 2] = 1.0
    return M


def invert_affine(M: np.ndarray) -> np.ndarray:
    """Exact inverse of (..., 3, 3) axis-aligned scale+translation maps."""
    inv = np.zeros_like(M)
    inv[..., 0, 0] = 1.0 / M[..., 0, 0]
    inv[..., 1, 1] = 1.0 / M[..., 1, 1]
    inv[..., 0, 2] = -M[..., 0, 2] / M[..., 0, 0]
    inv[..., 1, 2] = -M[..., 1, 2] / M[..., 1, 1]
    inv[..., 2, 2] = 1.0
    return inv


def intrinsics_to_crop(K_orig: np.ndarray, orig_to_crop: np.ndarray) -> np.ndarray:
    """K in original pixels (3,3) or (T,3,3) -> K in crop pixels (T,3,3)."""
    return np.asarray(orig_to_crop) @ np.asarray(K_orig, np.float64)


def intrinsics_to_orig(K_crop: np.ndarray, crop_to_orig: np.ndarray) -> np.ndarray:
    """K in crop pixels (3,3) or (T,3,3) -> K in original pixels (T,3,3)."""
    return np.asarray(crop_to_orig) @ np.asarray(K_crop, np.float64)


def fxfycxcy_to_crop(fxfycxcy: np.ndarray, orig_to_crop: np.ndarray) -> np.ndarray:
    """(fx, fy, cx, cy) in original pixels -> (T, 4) in crop pixels (same convention)."""
    fx, fy, cx, cy = np.asarray(fxfycxcy, np.float64)
    return _K_to_fxfycxcy(intrinsics_to_crop(K_matrix(fx, fy, cx, cy), orig_to_crop))


def fxfycxcy_to_orig(fxfycxcy_crop: np.ndarray, crop_to_orig: np.ndarray) -> np.ndarray:
    """(T, 4) or (4,) (fx, fy, cx, cy) in crop pixels -> (T, 4) in original pixels."""
    v = np.atleast_2d(np.asarray(fxfycxcy_crop, np.float64))
    return _K_to_fxfycxcy(intrinsics_to_orig(K_matrix(*v.T), crop_to_orig))


def _K_to_fxfycxcy(K: np.ndarray) -> np.ndarray:
    return np.stack([K[..., 0, 0], K[..., 1, 1], K[..., 0, 2], K[..., 1, 2]], -1)


def transform_points(M: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """Apply (T,3,3) maps to (T,K,2) points."""
    return xy @ np.swapaxes(M[..., :2, :2], -1, -2) + M[..., None, :2, 2]


def inframe_xyxy(orig_to_crop: np.ndarray, orig_hw: tuple[int, int], size: int) -> np.ndarray:
    """Where the original frame lies in each crop.

    Args:
        orig_to_crop: (T, 3, 3) axis-aligned maps.
        orig_hw: (h, w) of the original frames.
        size: N, side of the crop.

    Returns:
        (T, 4) float64 edges (x0, y0, x1, y1) in crop pixels of the frame's rectangle
        [-0.5, w - 0.5] x [-0.5, h - 0.5], clipped to the crop's [-0.5, N - 0.5].
    """
    h, w = orig_hw
    M = np.asarray(orig_to_crop, np.float64)
    scale = np.stack([M[:, 0, 0], M[:, 1, 1]], 1)
    shift = M[:, :2, 2]
    lo = scale * -0.5 + shift
    hi = scale * (np.array([w, h], np.float64) - 0.5) + shift
    return np.clip(np.concatenate([lo, hi], 1), -0.5, size - 0.5)


def inframe_mask(xyxy: np.ndarray, size: int) -> np.ndarray:
    """(N, N) bool: pixels whose centre lies in [x0, x1) x [y0, y1) of one `inframe_xyxy` row."""
    c = np.arange(size, dtype=np.float64)
    x0, y0, x1, y1 = np.asarray(xyxy, np.float64)
    return ((c >= y0) & (c < y1))[:, None] & ((c >= x0) & (c < x1))[None, :]


def warp_to_crop(
    img: np.ndarray,
    orig_to_crop: np.ndarray,
    size: int,
    pad: str = "constant",
    pad_value: int = 0,
    nearest: bool = False,
    inframe: np.ndarray | None = None,
) -> np.ndarray:
    """Resample an image into its N x N crop.

    Strong downscaling (a 4K frame to 512) first area-averages by an integer factor so the
    bilinear warp does not alias; the transform is adjusted so the result stays exact.

    Args:
        img: (H, W) or (H, W, C) image in original pixels.
        orig_to_crop: (3, 3) map of this frame.
        size: N.
        pad: "constant" or "replicate" outside the original frame.
        pad_value: grey level for constant padding.
        nearest: nearest-neighbour sampling (label maps).
        inframe: (N, N) bool `inframe_mask` of this frame. With constant padding the warp then
            replicates the edge for the half pixel that bilinear sampling reaches past it (no
            dark fringe inside the frame) and sets every pixel outside the mask to
            `pad_value` exactly.

    Returns:
        (N, N[, C]) image of the same dtype.
    """
    M = np.asarray(orig_to_crop, np.float64)
    k = int(1.0 / M[0, 0]) if not nearest else 1
    if k >= 2:
        h, w = img.shape[:2]
        dw, dh = max(1, round(w / k)), max(1, round(h / k))
        img = cv2.resize(img, (dw, dh), interpolation=cv2.INTER_AREA)
        sx, sy = dw / w, dh / h
        M = M @ np.linalg.inv(resize_affine(sx, sy))
    paint = pad == "constant" and inframe is not None
    border = cv2.BORDER_CONSTANT if pad == "constant" and not paint else cv2.BORDER_REPLICATE
    flags = cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR
    value = (pad_value,) * 4
    out = cv2.warpAffine(
        img, M[:2], (size, size), flags=flags, borderMode=border, borderValue=value
    )
    if paint and inframe is not None:  # (paint implies it; said again for the type checker)
        out[~inframe] = pad_value
    return out
