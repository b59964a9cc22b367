"""Stage download (dataset=hdtf): fetch the subject's source video and cut its annotated clips.

``python launch.py dataset=hdtf subject=Radio11_0 stage=download`` downloads Radio11 (the
subject may name a video or one of its clips) into ``dataset.root``; ``download.all_videos=true``
acquires every video the tables list. Tables are read from ``download.annotations`` (default
``<dataset.root>/annotations``, where the hdtf ingest also looks). An unavailable video is
recorded in ``<root>/download_record.json`` and fails this subject with one line, so a multirun
goes on with the other subjects and lists this one in its failure summary.
"""

from __future__ import annotations

import logging
from pathlib import Path

from prep.errors import BadConfigError, BadInputError
from prep.pipeline import StageContext, StageResult, register_stage

log = logging.getLogger(__name__)


@register_stage("download", needs=(), config=("download",), version=1)
def run(ctx: StageContext) -> StageResult:
    from prep.download.annotations import read_release
    from prep.download.fetch import VideoUnavailableError
    from prep.download.hdtf import RECORD, acquire

    cfg = ctx.cfg.download
    if ctx.cfg.dataset.name != "hdtf" or not ctx.cfg.dataset.root:
        raise BadConfigError("stage=download acquires HDTF: use dataset=hdtf dataset.root=<dir>")
    root = Path(ctx.cfg.dataset.root).expanduser()
    release = read_release(Path(cfg.annotations) if cfg.annotations else root / "annotations")
    if cfg.all_videos:
        videos = list(release.videos.values())
    else:
        videos = [release.video_of(ctx.subject.name)]
    res = acquire(root, videos, cfg)
    metrics = {
        "clips_ok": float(len(res.clips_ok)),
        "clips_failed": float(len(res.clips_failed)),
        "videos_unavailable": float(len(res.videos_unavailable)),
        "download_s": round(res.download_s, 3),
    }
    log.info(
        "download: %d clips ok, %d failed, %d videos unavailable (record: %s)",
        len(res.clips_ok),
        len(res.clips_failed),
        len(res.videos_unavailable),
        root / RECORD,
    )
    if not cfg.all_videos:
        video = videos[0]
        if video.name in res.videos_unavailable:
            raise VideoUnavailableError(
                video.name, cfg.url_override or video.url or "-", res.videos_unavailable[video.name]
            )
        if ctx.subject.name in res.clips_failed:
            raise BadInputError(
                f"HDTF clip {ctx.subject.name}: {res.clips_failed[ctx.subject.name]}"
            )
    return StageResult(n_frames=0, n_flagged=len(res.clips_failed), metrics=metrics)
