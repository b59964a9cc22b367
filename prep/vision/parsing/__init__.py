"""Face parsing in the BiSeNet / CelebAMask-HQ 19-class convention (see `LABELS`).

Backends: `mesh` (regions rasterised from the MediaPipe face mesh plus matte heuristics,
`prep.vision.parsing.mesh`) and `bisenet` (the face-parsing.PyTorch network,
`prep.vision.parsing.bisenet`). Side-specific labels: "l_" (2, 4, 7) is drawn on the image's left
(the subject's right) and "r_" (3, 5, 8) on the image's right; every consumer we know (HRAvatar's
masks, IMAvatar's semantics) merges the two sides.
"""

from __future__ import annotations

import numpy as np

LABELS = (
    "background",
    "skin",
    "l_brow",
    "r_brow",
    "l_eye",
    "r_eye",
    "eye_g",
    "l_ear",
    "r_ear",
    "ear_r",
    "nose",
    "mouth",
    "u_lip",
    "l_lip",
    "neck",
    "neck_l",
    "cloth",
    "hair",
    "hat",
)
LABEL = {name: i for i, name in enumerate(LABELS)}
CLOTH = LABEL["cloth"]


def final_mask(alpha: np.ndarray, labels: np.ndarray, mask_clothes: bool) -> np.ndarray:
    """The mask avatar trainers get: the matte, with cloth removed when asked (as HRAvatar does).

    Removing cloth also clears the matte's soft edge within 3 pixels of the cloth region.

    Args:
        alpha: (H, W) uint8 matte.
        labels: (H, W) uint8 label map.
        mask_clothes: zero the cloth label.

    Returns:
        (H, W) uint8 mask.
    """
    if not mask_clothes:
        return alpha.copy()
    import cv2

    cloth = (labels == CLOTH).astype(np.uint8)
    # the matte's soft edge around the clothes is labelled background (below the foreground
    # threshold); remove it too, or a faint outline of the shoulders stays in the mask
    near = cv2.dilate(cloth, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (7, 7))) > 0
    drop = (cloth > 0) | (near & (labels == LABEL["background"]))
    return np.where(drop, 0, alpha).astype(np.uint8)
