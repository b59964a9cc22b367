"""Built-in stages, one module each, registered with `prep.pipeline` when imported.

The engine knows them by name (`prep.pipeline.BUILTIN_STAGES`); no stage imports another.

Modules are imported on demand (`prep.pipeline.get_stage` loads a stage's module and, through its
`needs`, its upstream stages), so a run touches only the stages of its plan: re-checking a finished
extract_frames never pays for importing torch, Lightning or mediapipe.
"""
