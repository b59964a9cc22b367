"""``prep_export.json``: what every export folder records about itself.

Trainers load a FLAME (or BFM) model of their own; parameters fitted with another model version
put the mesh in the wrong place without any error. Every export therefore names the model its
parameters belong to, the coefficient counts, the camera it was re-cropped to, and what the
consumer must be told (its own defaults that differ), and logs those notes as warnings.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from prep.io.files import write_json

log = logging.getLogger(__name__)

INFO_NAME = "prep_export.json"

# The FLAME file each consumer loads by default (their code; FORMATS.md "Model files").
CONSUMER_FLAME = {
    "imavatar": ("flame2020", "code/flame/FLAME2020/generic_model.pkl"),
    "hravatar": ("flame2020", "assets/flame_model/flame2020.pkl"),
    "gaussianavatars": ("flame2023", "flame_model/assets/flame/flame2023.pkl"),
    "insta": ("flame2020", "metrical-tracker data/FLAME2020/generic_model.pkl"),
}


def model_notes(fmt: str, model: str) -> list[str]:
    """Warnings when the fit's FLAME version is not the one `fmt`'s trainer loads by default."""
    if fmt not in CONSUMER_FLAME:
        return []
    want, path = CONSUMER_FLAME[fmt]
    if model == want:
        return []
    return [
        f"{fmt}: these parameters belong to {model} but the trainer loads {want} by default "
        f"({path}): point it at your {model} file (GaussianAvatars: FLAME_MODEL_PATH in "
        "flame_model/flame.py) or re-fit with flame=" + want
    ]


def coefficient_notes(fmt: str, name: str, values: np.ndarray, n_read: int) -> list[str]:
    """A warning when coefficients beyond what the consumer reads are not zero (they are lost)."""
    values = np.asarray(values)
    if values.shape[-1] <= n_read or not np.any(np.abs(values[..., n_read:]) > 1e-6):
        return []
    return [
        f"{fmt}: the fit has {values.shape[-1]} {name} coefficients but the trainer reads "
        f"{n_read}: the rest are dropped (fit with fewer, or raise the trainer's setting)"
    ]


def write_export_info(out: Path, fmt: str, model: str, notes: list[str], **fields) -> None:
    """Write ``<out>/prep_export.json`` and log every note as a warning.

    Args:
        out: the export folder.
        fmt: export format name.
        model: the parametric model the parameters belong to (flame2020, flame2023, bfm ...).
        notes: what the user must know to train with this folder.
        fields: other JSON-ready values (coefficient counts, camera, frame count).
    """
    for note in notes:
        log.warning("%s", note)
    write_json(Path(out) / INFO_NAME, {"format": fmt, "model": model, **fields, "notes": notes})
