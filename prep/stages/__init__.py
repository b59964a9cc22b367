"""Built-in stages, one module each, registered with `prep.pipeline` when imported.

Modules are imported on demand (`prep.pipeline.get_stage` loads a stage's module and, through its
`needs`, its upstream stages), so a run touches only the stages of its plan: re-checking a finished
extract_frames never pays for importing torch, Lightning or mediapipe.
"""

BUILTIN_STAGES = (
    "extract_frames",
    "detect",
    "crop",
    "matting",
    "landmarks",
    "parsing",
    "iris",
    "albedo",
    "fit_flame",
    "fit_3dmm_coarse",
    "fit_3dmm_fine",
    "pack_lmdb",
    "import_tracking",
    "export",
    "report",
    "download",
)
