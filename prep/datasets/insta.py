"""INSTA release ingest: ``<root>/<subject>/images/*.png`` RGBA frames, already cropped + matted.

The frames are taken as they are: the RGB channels become frames/, the alpha channel becomes
matting/alpha/, and the crop is the identity (crop/frames/ + crop/crop.npz), so detect, crop
and matting are not run. Intrinsics come from ``transforms.json`` (or ``transforms_train.json``)
beside images/ when present: ``fl_x, fl_y, cx, cy`` in pixels of the images.
"""

from __future__ import annotations

import logging
from pathlib import Path

from prep.config import Config
from prep.datasets.base import Intrinsics, Source, check_same_size, list_images
from prep.errors import BadConfigError, BadInputError
from prep.io.files import read_json

log = logging.getLogger(__name__)

TRANSFORMS_NAMES = ("transforms.json", "transforms_train.json")


def read_intrinsics(path: Path) -> Intrinsics:
    """Intrinsics from an INSTA/instant-ngp style transforms.json."""
    try:
        meta = read_json(path)
        fx = float(meta["fl_x"])
        fy = float(meta.get("fl_y", fx))
        cx = float(meta.get("cx", float(meta["w"]) / 2))
        cy = float(meta.get("cy", float(meta["h"]) / 2))
    except (KeyError, TypeError, ValueError) as e:
        raise BadInputError(f"{path} has no usable intrinsics (fl_x, fl_y, cx, cy): {e}") from e
    return Intrinsics(fx, fy, cx, cy)


def source(cfg: Config, subject: str) -> Source:
    """The INSTA subject folder ``<dataset.root>/<subject>``."""
    if not cfg.dataset.root:
        raise BadConfigError("dataset=insta needs dataset.root=<folder holding the subjects>")
    folder = Path(cfg.dataset.root).expanduser() / subject
    if not folder.is_dir():
        raise BadInputError(f"INSTA subject folder not found: {folder}")
    images = list_images(folder / "images")
    check_same_size(images)
    intrinsics, extra = None, []
    for name in TRANSFORMS_NAMES:
        if (folder / name).is_file():
            intrinsics, extra = read_intrinsics(folder / name), [folder / name]
            break
    else:
        log.info("no transforms.json in %s: intrinsics left to the config", folder)
    return Source(
        "insta",
        subject,
        images=images,
        alpha=True,
        provides_crop=True,
        intrinsics=intrinsics,
        extra_files=extra,
    )
