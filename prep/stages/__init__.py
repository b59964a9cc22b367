"""Built-in stages: importing this package registers them with `prep.pipeline`.

Each module defines one stage with `@register_stage`; add an import line per stage module.
"""

import importlib
import logging

log = logging.getLogger(__name__)

_STAGE_MODULES = [
    "extract_frames",
    "detect",
    "crop",
    "matting",
    "landmarks",
    "iris",
    "parsing",
    "albedo",
    "fit_flame",
    "fit_3dmm_coarse",
    "fit_3dmm_fine",
    "pack_lmdb",
    "export",
    "report",
    "download",
]

for _name in _STAGE_MODULES:
    try:
        importlib.import_module(f"{__name__}.{_name}")
    except ModuleNotFoundError as _e:  # a stage module not written yet
        if _e.name != f"{__name__}.{_name}":
            raise
