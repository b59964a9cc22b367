"""Opening every external model file before it is trusted: present, corrupt, refused or missing.

`check_asset` runs the asset's check (`CHECKS`): it opens the file the way its stage will, through
the restricted loaders of `prep.io.safe_load` (nothing in a file is executed), and verifies the
keys and shapes the stage needs. Network checkpoints are loaded into the network they belong to,
strictly, so a checkpoint of another network is "corrupt" here rather than halfway through a
stage. An asset without a check (a newly registered one) only has to exist and be non-empty.

Results are kept per process, keyed by the file's path, size and mtime, so the runner's
pre-flight check and a stage's own load do not parse a multi-GB file more than once per run.
`facts` are what a check learned that config validation needs (the FLAME model's component
counts, for ``flame.n_shape``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from prep.assets import ASSETS, asset_path, resolve_asset, sha256_file
from prep.errors import MissingAssetError, PrepError
from prep.io.safe_load import UnsafePickleError, refused_reason

if TYPE_CHECKING:
    from prep.config import Config
    from prep.pipeline import Stage

STATUSES = ("present", "corrupt", "refused", "missing")


@dataclass
class AssetStatus:
    """Outcome of checking one asset.

    Attributes:
        name: registry name.
        status: one of `STATUSES`.
        path: where it was looked for.
        detail: what was found (present) or what is wrong (otherwise).
        facts: numbers the check read (e.g. ``{"n_shape": 300, "n_expr": 100}``).
        error: the error to raise when the asset is not usable (None when present).
    """

    name: str
    status: str
    path: Path
    detail: str = ""
    facts: dict[str, Any] = field(default_factory=dict)
    error: MissingAssetError | None = None


Check = Callable[[Path, "Config"], tuple[str, dict[str, Any]]]


def _flame(path: Path, cfg: Config) -> tuple[str, dict]:
    from prep.models.flame_io import load_flame_model

    d = load_flame_model(path)
    s, e = d.shapedirs.shape[2], d.exprdirs.shape[2]
    return f"{d.n_vertices} vertices, {s} shape + {e} expression", {"n_shape": s, "n_expr": e}


def _lmk_embedding(path: Path, cfg: Config) -> tuple[str, dict]:
    from prep.models.flame_io import load_landmark_embedding

    emb = load_landmark_embedding(path)
    return f"{emb.n_points} points", {"n_points": emb.n_points}


def _mediapipe_embedding(path: Path, cfg: Config) -> tuple[str, dict]:
    from prep.models.flame_io import load_mediapipe_embedding

    return f"{len(load_mediapipe_embedding(path).faces)} points", {}


def _flame_masks(path: Path, cfg: Config) -> tuple[str, dict]:
    from prep.io.safe_load import load_pickle

    masks = load_pickle(path.read_bytes(), path, kinds=("flame",))
    if not isinstance(masks, dict) or not masks:
        raise PrepError(f"expected a dict of vertex index arrays, got {type(masks).__name__}")
    bad = [k for k, v in masks.items() if np.asarray(v).dtype.kind not in "iu"]
    if bad:
        raise PrepError(f"region {bad[0]!r} is not a vertex index array")
    return f"{len(masks)} regions", {}


def _mat_vars(path: Path, need: dict[str, int | None]) -> dict[str, tuple[int, ...]]:
    """Variables of a .mat file from its headers (no data read); `need` maps name -> ndim."""
    import scipy.io

    try:
        shapes = {name: shape for name, shape, _ in scipy.io.whosmat(str(path))}
    except (ValueError, OSError, TypeError, NotImplementedError) as e:
        raise PrepError(f"unreadable .mat ({str(e).splitlines()[0][:80]})") from None
    missing = [k for k in need if k not in shapes]
    if missing:
        raise PrepError(f"missing {', '.join(missing)}")
    return shapes


def _bfm_front(path: Path, cfg: Config) -> tuple[str, dict]:
    from prep.models.bfm_io import FRONT_KEYS

    s = _mat_vars(path, dict.fromkeys(FRONT_KEYS))
    n3 = int(np.prod(s["meanshape"]))
    for key in ("idBase", "exBase", "texBase"):
        if s[key][0] != n3:
            raise PrepError(f"{key} has {s[key][0]} rows, meanshape has {n3} values")
    if int(np.prod(s["keypoints"])) != 68:
        raise PrepError(f"keypoints has {int(np.prod(s['keypoints']))} entries, expected 68")
    return f"{n3 // 3} vertices, id {s['idBase'][1]}, exp {s['exBase'][1]}", {}


def _bfm_2009(path: Path, cfg: Config) -> tuple[str, dict]:
    keys = ("shapeMU", "shapePC", "shapeEV", "texMU", "texPC", "texEV")
    s = _mat_vars(path, dict.fromkeys(keys))
    return f"{int(np.prod(s['shapeMU'])) // 3} vertices, {s['shapePC'][-1]} shape PCs", {}


def _exp_pca(path: Path, cfg: Config) -> tuple[str, dict]:
    size = path.stat().st_size
    with open(path, "rb") as f:
        dim = int(np.frombuffer(f.read(4), np.int32)[0]) if size >= 4 else 0
    n_float = (size - 4) // 4
    if dim <= 0 or n_float % (dim + 1) or (n_float // (dim + 1)) % 3:
        raise PrepError(f"size {size} does not fit Exp_Pca.bin with dim {dim}")
    return f"{dim} expression PCs over {n_float // (dim + 1) // 3} vertices", {}


def _adnerf(path: Path, cfg: Config) -> tuple[str, dict]:
    from prep.models.bfm_io import load_adnerf

    bfm = load_adnerf(path)
    return f"{bfm.n_vertices} vertices, id {bfm.id_base.shape[1]}, exp {bfm.exp_base.shape[1]}", {}


def _network(build: Callable[[], Any], loader: str) -> Check:
    def check(path: Path, cfg: Config) -> tuple[str, dict]:
        from prep.vision.matting import load_state_dict

        net = build()
        load_state_dict(net, path, loader)
        return f"{sum(p.numel() for p in net.parameters()) / 1e6:.1f} M parameters", {}

    return check


def _rvm(variant: str) -> Callable[[], Any]:
    def build():
        from prep.vision.matting.rvm import MattingNetwork

        return MattingNetwork(variant)

    return build


def _modnet():
    from prep.vision.matting.modnet import MODNet

    return MODNet()


def _loaded(load: Callable[[Path], Any]) -> Check:
    def check(path: Path, cfg: Config) -> tuple[str, dict]:
        net = load(path)
        return f"{sum(p.numel() for p in net.parameters()) / 1e6:.1f} M parameters", {}

    return check


def _bisenet(path: Path):
    from prep.vision.parsing.bisenet import load_bisenet

    return load_bisenet(path)


def _deca(path: Path):
    from prep.track.deca import load_deca_encoder

    return load_deca_encoder(path)


def _deep3dface(path: Path):
    from prep.vision.deep3dface import load_deep3dface

    return load_deep3dface(path)


def _lm3d(path: Path, cfg: Config) -> tuple[str, dict]:
    from prep.vision.deep3dface import load_lm3d

    load_lm3d(path)
    return "68 points (5 used for alignment)", {}


def _fan_dir(path: Path, cfg: Config) -> tuple[str, dict]:
    """The two files face-alignment loads, by their exact names (any plain folder)."""
    from prep.vision.landmarks.fan_backend import check_files, installed_files

    names, version = installed_files()
    found = check_files(path, names, version)
    return ", ".join(p.name for p in found.values()), {}


def _intrinsic_anything(path: Path, cfg: Config) -> tuple[str, dict]:
    from prep.vision.albedo.intrinsic_anything import check_install

    check_install(cfg.albedo)
    return "inference.py and weights found", {}


CHECKS: dict[str, Check] = {
    "flame2020": _flame,
    "flame2023": _flame,
    "flame_lmk_embedding": _lmk_embedding,
    "flame_lmk_embedding_eyes": _lmk_embedding,
    "flame_mediapipe_embedding": _mediapipe_embedding,
    "flame_masks": _flame_masks,
    "bfm_front": _bfm_front,
    "bfm_2009": _bfm_2009,
    "bfm_exp_pca": _exp_pca,
    "bfm_adnerf": _adnerf,
    "bfm_lm3d": _lm3d,
    "rvm_mobilenetv3": _network(_rvm("mobilenetv3"), "rvm_mobilenetv3"),
    "rvm_resnet50": _network(_rvm("resnet50"), "rvm_resnet50"),
    "modnet": _network(_modnet, "modnet"),
    "bisenet": _loaded(_bisenet),
    "deca": _loaded(_deca),
    "deep3dface": _loaded(_deep3dface),
    "fan_dir": _fan_dir,
    "intrinsic_anything_dir": _intrinsic_anything,
}

_CACHE: dict[tuple, AssetStatus] = {}


def _key(name: str, path: Path) -> tuple:
    try:
        st = path.stat()
        return (name, str(path.resolve()), st.st_size, st.st_mtime_ns)
    except OSError:
        return (name, str(path), None, None)


def check_asset(cfg: Config, name: str) -> AssetStatus:
    """Open asset `name` as its stage will (without executing anything) and report its status."""
    path = asset_path(cfg, name)
    try:
        resolve_asset(cfg, name)
    except MissingAssetError as e:
        return AssetStatus(name, e.status, path, _reason(e, path), error=e)
    key = _key(name, path)
    if key in _CACHE:
        return _CACHE[key]
    check = CHECKS.get(name)
    try:
        detail, facts = check(path, cfg) if check else ("exists", {})
        out = AssetStatus(name, "present", path, detail, facts)
    except MissingAssetError as e:
        out = AssetStatus(name, e.status, path, _reason(e, path), error=e)
    except UnsafePickleError as e:
        out = _failed(name, path, refused_reason(e), "refused")
    except (PrepError, OSError, ValueError, RuntimeError, KeyError, IndexError) as e:
        out = _failed(name, path, _reason(e, path), "corrupt")
    _CACHE[key] = out
    return out


def _reason(e: Exception, path: Path) -> str:
    """The cause, without the path and hints that the asset error adds again."""
    if isinstance(e, MissingAssetError):
        text = str(e).split(";")[0].removeprefix(f"{e.asset}: ")
        return text.rsplit(" at ", 1)[0]
    text = str(e).splitlines()[0] if str(e) else type(e).__name__
    for prefix in (f"{path}: ", f"FLAME model {path}: ", f"landmark embedding {path}: "):
        text = text.replace(prefix, "")
    return text.replace(str(path), "the file")


def _failed(name: str, path: Path, reason: str, status: str) -> AssetStatus:
    asset = ASSETS[name]
    reason = reason if status == "refused" else f"corrupt ({reason})"
    err = MissingAssetError(name, path, asset.url, f"assets.{name}", reason, status=status)
    return AssetStatus(name, status, path, reason, error=err)


def verify_asset(cfg: Config, name: str) -> AssetStatus:
    """`check_asset`, raising its MissingAssetError when the asset is not usable."""
    st = check_asset(cfg, name)
    if st.error is not None:
        raise st.error
    return st


def asset_table(cfg: Config, verify: bool = False) -> list[tuple[str, str, str, str, str]]:
    """Rows ``(name, status, path, used_by, detail)``; status: present, corrupt, refused, missing.

    Each present file is opened as its stage would open it (`prep.asset_checks`), without
    executing anything in it; `verify` also compares published sha256 sums.
    """
    rows = []
    for name, asset in ASSETS.items():
        st = check_asset(cfg, name)
        status, detail = st.status, st.detail
        if status == "present" and verify and asset.sha256 and sha256_file(st.path) != asset.sha256:
            status, detail = "corrupt", "sha256 mismatch"
        rows.append((name, status, str(st.path), asset.used_by, detail))
    return rows


def missing_assets(cfg: Config, stage: Stage, deep: bool = False) -> list[MissingAssetError]:
    """Assets `stage` needs under `cfg` that are absent (or, with `deep`, also those that do not
    open as their stage needs: corrupt or refused), as errors ready to raise or report."""
    errors = []
    for name in stage.assets(cfg) if stage.assets else []:
        if deep:
            if (err := check_asset(cfg, name).error) is not None:
                errors.append(err)
            continue
        try:
            resolve_asset(cfg, name)
        except MissingAssetError as e:
            errors.append(e)
    return errors
