"""Builders of a synthetic subject with everything the exporters and the report read."""

from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation

from prep.export import cameras as cam
from prep.io.files import save_npz, write_image, write_json
from prep.subject import SubjectDir, frame_stem

T, H, W = 12, 48, 40
INVALID = (3, 7)


def make_tracking(
    t: int = T, seed: int = 0, n_shape: int = 20, n_expr: int = 10, rotating: bool = False
) -> dict:
    """Arrays of flame/tracking.npz for t frames: fit_flame's fixed camera and moving heads, or
    (`rotating`) a moving camera as an imported tracking has."""
    rng = np.random.default_rng(seed)
    w2c = np.tile(np.eye(4), (t, 1, 1))
    w2c[:, :3, :3] = cam.CV_TO_GL
    if rotating:
        w2c[:, :3, :3] = (
            w2c[:, :3, :3] @ Rotation.from_rotvec(rng.normal(0, 0.1, (t, 3))).as_matrix()
        )
        w2c[:, :3, 3] = rng.normal(0, 0.01, (t, 3)) + [0, 0, 0.6]
    valid = np.ones(t, bool)
    valid[list(INVALID)] = False
    return dict(
        frame_names=np.array([f"{frame_stem(i)}.png" for i in range(t)]),
        valid=valid,
        lmk_rmse_px=np.where(valid, rng.uniform(0.5, 2, t), np.nan).astype(np.float32),
        shape=rng.normal(0, 1, n_shape).astype(np.float32),
        expr=rng.normal(0, 1, (t, n_expr)).astype(np.float32),
        eyelids=np.zeros((t, 2), np.float32),
        global_pose=rng.normal(0, 0.1, (t, 3)).astype(np.float32),
        neck_pose=rng.normal(0, 0.05, (t, 3)).astype(np.float32),
        jaw_pose=rng.normal(0, 0.05, (t, 3)).astype(np.float32),
        eyes_pose=rng.normal(0, 0.05, (t, 6)).astype(np.float32),
        transl=(rng.normal(0, 0.01, (t, 3)) + ([0, 0, 0] if rotating else [0, 0, -0.6])).astype(
            np.float32
        ),
        w2c=w2c,
        K=cam.k_matrix(60.0, 61.0, W / 2 - 0.3, H / 2 + 0.2),
        image_size=np.array([H, W]),
        crop_to_orig=np.tile(np.eye(3), (t, 1, 1)),
        model=np.array("flame2020"),
        n_shape=np.array(n_shape),
        n_expr=np.array(n_expr),
    )


def make_subject(root, t: int = T, seed: int = 0, rotating: bool = False) -> SubjectDir:
    """Write image/, mask/, parsing/labels/, crop/frames/, landmarks, irises, flame/*,
    bfm/fine.npz and a DeepSpeech feature file (``<root>/aud.npy``) for t frames."""
    rng = np.random.default_rng(seed)
    s = SubjectDir(root)
    track = make_tracking(t, seed, rotating=rotating)
    save_npz(s.flame_tracking, **track)
    # a still face with detector-like noise (the report flags jitter above 3 px)
    points = rng.uniform(8, 32, (68, 2)) + rng.normal(0, 0.1, (t, 68, 2))
    save_npz(
        s.landmarks_npz,
        points_px=points.astype(np.float32),
        valid=np.ones(t, bool),
        image_hw=np.array([H, W]),
        frame_names=track["frame_names"],
    )
    iris = rng.uniform(10, 30, (2, 2)) + rng.normal(0, 0.1, (t, 2, 2))
    save_npz(s.iris_npz, iris_px=iris.astype(np.float32), valid=np.ones((t, 2), bool))
    np.save(s.root / "aud.npy", rng.normal(size=(t, 16, 29)).astype(np.float32))
    frames = []
    for i in range(t):
        rgba = rng.integers(0, 256, (H, W, 4), dtype=np.uint8)
        rgba[..., 3] = np.where(rng.random((H, W)) > 0.3, 255, 0)
        write_image(s.image_path(i), rgba)
        write_image(s.mask_path(i), rgba[..., 3].copy())
        write_image(s.parsing_path(i), rng.integers(0, 19, (H, W), dtype=np.uint8))
        write_image(s.crop_frame_path(i), np.ascontiguousarray(rgba[..., :3]))
        frames.append(
            {
                "file_path": f"./image/{frame_stem(i)}",
                "world_mat": [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, -4.0]],
                "expression": track["expr"][i].tolist(),
                "pose": np.concatenate(
                    [
                        track["global_pose"][i],
                        track["neck_pose"][i],
                        track["jaw_pose"][i],
                        track["eyes_pose"][i],
                    ]
                ).tolist(),
                "bbox": [-0.5, -0.5, 0.5, 0.5],
                "flame_keypoints": rng.uniform(-1, 1, (70, 2)).tolist(),
            }
        )
    write_json(
        s.flame_params_json,
        {
            "frames": frames,
            "intrinsics": cam.imavatar_intrinsics(track["K"], (H, W)).tolist(),
            "shape_params": track["shape"].tolist(),
        },
    )
    euler = rng.normal(0, 0.1, (t, 3))
    trans = rng.normal(0, 0.1, (t, 3)) + [0, 0, -10.0]
    w2c, K = cam.adnerf_to_opencv(euler, trans, 1100.0, (W - 1) / 2, (H - 1) / 2)
    save_npz(
        s.bfm_fine,
        euler=euler,
        trans=trans,
        focal=np.array(1100.0),
        valid=np.ones(t, bool),
        lmk_rmse_px=rng.uniform(0.5, 1.5, t).astype(np.float32),
        w2c=w2c,
        K=K,
        image_size=np.array([H, W]),
        variant=np.array("adnerf"),
        id=rng.normal(size=(1, 100)),
        exp=rng.normal(size=(t, 79)),
    )
    return s
