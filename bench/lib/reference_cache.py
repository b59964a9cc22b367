"""A cache of reference fits for bench/fit_flame.py, used only when asked (``--reference-cache``).

HRAvatar's fit takes 10-17 minutes per 200-frame seed on the shared 2-core machine and does not
change when our tracker does, so while exploring its results can be reused. An entry is keyed by
a hash of everything the reference sees: the observed points, the valid frames, the crop size,
the intrinsics, the DECA code, the reference settings, the thread count and the synthetic model
file; a changed input is a miss, never a stale hit. Each entry keeps the fit's parameters (so the
metrics are recomputed against the truth in the run that reads it), its wall and CPU seconds,
peak RSS, and the load average and time when it was measured. ``--reference-import`` adds the
reference metrics of an earlier results JSON of the same settings (metrics only, no parameters),
for the inputs this run draws; the JSON that reads them names the source per seed.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import numpy as np

ARRAY_KEYS = ("params", "lmk_px")


def reference_key(arrays: dict, settings: dict, model_file: Path) -> str:
    """Hex digest of the reference's inputs (`arrays`: name -> array, `settings`: JSON-able)."""
    h = hashlib.sha1()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}{a.dtype}{a.shape}".encode())
        h.update(a.tobytes())
    h.update(json.dumps(settings, sort_keys=True).encode())
    h.update(Path(model_file).read_bytes())
    return h.hexdigest()[:20]


def load(cache_dir: Path, key: str) -> dict | None:
    """The cached result of `key` (as the reference job returns it, plus ``cache``), or None."""
    meta_f, arr_f = cache_dir / f"{key}.json", cache_dir / f"{key}.npz"
    if not meta_f.exists():
        return None
    meta = json.loads(meta_f.read_text())
    if "metrics" in meta:  # imported from an earlier results JSON (`import_metrics`)
        return {**meta, "cache": {**meta["cache"], "hit": True}}
    if not arr_f.exists():
        return None
    with np.load(arr_f) as z:
        params = {k[len("params/") :]: z[k] for k in z.files if k.startswith("params/")}
        lmk = z["lmk_px"]
    out = {k: v for k, v in meta.items() if k != "cache"}
    return {**out, "params": params, "lmk_px": lmk, "cache": {**meta["cache"], "hit": True}}


def store(cache_dir: Path, key: str, result: dict, note: dict) -> None:
    """Write `result` (params, lmk_px, seconds, ...) under `key`; `note` describes the setting."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    arrays = {f"params/{k}": np.asarray(v) for k, v in result["params"].items()}
    np.savez(cache_dir / f"{key}.npz", lmk_px=result["lmk_px"], **arrays)
    meta = {k: v for k, v in result.items() if k not in ARRAY_KEYS}
    meta["cache"] = {"key": key, "measured_at": time.strftime("%Y-%m-%d %H:%M:%S"), **note}
    (cache_dir / f"{key}.json").write_text(json.dumps(meta, indent=1) + "\n")


def import_metrics(cache_dir: Path, key: str, entry: dict, note: dict) -> bool:
    """Store an earlier run's reference metrics (its per-seed ``reference`` entry) under `key`
    unless the cache already has it; the bench then reports them instead of re-fitting."""
    if (cache_dir / f"{key}.json").exists():
        return False
    cache_dir.mkdir(parents=True, exist_ok=True)
    keep = ("seconds", "cpu_seconds", "peak_rss_gb", "load_avg_1min")
    meta = {k: entry[k] for k in keep if k in entry}
    meta["metrics"] = {k: v for k, v in entry.items() if k not in (*keep, "intrinsics", "cache")}
    meta["cache"] = {"key": key, "imported_at": time.strftime("%Y-%m-%d %H:%M:%S"), **note}
    (cache_dir / f"{key}.json").write_text(json.dumps(meta, indent=1) + "\n")
    return True
