"""Importers: other trackers' folders -> our canonical subject (the hub between formats).

Each importer reads one foreign layout and returns an `Imported`: the frames in order, their
masks, the FLAME tracking in our canonical convention (flame/tracking.npz: OpenCV ``w2c``,
``x_cam = w2c (FLAME(x) + transl)``, crop-pixel ``K`` with integer pixel centres) when the layout
has FLAME parameters, and the 68 landmarks + irises when it has detections. Stage import_tracking
writes them where fit_flame and the exporters read them, so any export can be made from any
import and fit_flame can re-fit on the imported landmarks without running perception.

Datasets (conf/dataset/<name>.yaml, folder ``<dataset.root>/<subject>``):

- ``imavatar``: an IMAvatar / HRAvatar subject folder (image/, mask/, keypoint.json, iris.json,
  optional code.json, flame_params.json and/or tracked_params.json).
- ``vhap``: a VHAP / GaussianAvatars export (transforms.json, images/, fg_masks/, flame_param/).
- ``metrical``: a metrical-tracker output actor folder (checkpoint/*.frame, input/*.png).
- ``insta_tracked``: an INSTA folder (transforms.json, images/ RGBA, meshes/*.obj): cameras and
  meshes, no FLAME parameters; its landmarks come from the meshes, fit_flame fits FLAME to them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass
class Imported:
    """What one foreign folder holds, in our conventions.

    Attributes:
        frame_files: (T,) image files in frame order (extract_frames writes them as frames).
        image_size: (h, w).
        alpha_in_images: the images carry the matte in an alpha channel.
        mask_files: (T,) grey masks per frame (None when there are none, or in the images).
        label_files: (T,) BiSeNet-convention parsing labels per frame (IMAvatar semantic/), or
            None.
        params: FLAME parameters (`prep.models.flame_tracking.FLAME_PARAMS`: (T, ...) arrays and
            (n_shape,) shape), or None.
        w2c: (T,4,4) OpenCV world-to-camera (None without parameters or meshes).
        K: (T,3,3) intrinsics, integer pixel centres.
        model: FLAME version the parameters belong to (None: the configured one).
        lmk_px: (T,68,2) detected landmarks (NaN where missing), or None (project the FLAME fit).
        iris_px: (T,2,2) detected irises [subject's left, right], or None.
        meshes: frame indices -> (n,V,3) world vertices on FLAME's vertex order (INSTA).
        reference_mesh: (V,3) the subject's unposed mesh (INSTA's canonical.obj), or None.
        notes: what the user must know (logged, and kept in prep_import.json).
        source_files: files the import depends on (fingerprinted).
    """

    frame_files: list[Path]
    image_size: tuple[int, int]
    alpha_in_images: bool = False
    mask_files: list[Path] | None = None
    params: dict[str, np.ndarray] | None = None
    w2c: np.ndarray | None = None
    K: np.ndarray | None = None
    model: str | None = None
    lmk_px: np.ndarray | None = None
    iris_px: np.ndarray | None = None
    meshes: Callable[[np.ndarray], np.ndarray] | None = None
    notes: list[str] = field(default_factory=list)
    source_files: list[Path] = field(default_factory=list)
    reference_mesh: np.ndarray | None = None
    label_files: list[Path] | None = None

    @property
    def n_frames(self) -> int:
        return len(self.frame_files)


def has_alpha(path: Path) -> bool:
    """Whether an image file carries an alpha channel (from its header)."""
    from PIL import Image

    with Image.open(path) as im:
        return "A" in im.getbands()


def _module(kind: str):
    from prep.importers import imavatar, insta, metrical, vhap

    return {"imavatar": imavatar, "vhap": vhap, "metrical": metrical, "insta_tracked": insta}[kind]


def read_importer(kind: str, folder: Path) -> Imported:
    """Read `folder` with the importer of dataset `kind`."""
    return _module(kind).read(Path(folder))


def import_frame_files(kind: str, folder: Path) -> list[Path]:
    """The frames `kind`'s importer will take from `folder`, in order (cheap: no parameters)."""
    return _module(kind).frame_files(Path(folder))


IMPORT_KINDS = ("imavatar", "vhap", "metrical", "insta_tracked")
