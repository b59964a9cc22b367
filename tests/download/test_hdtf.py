"""HDTF acquisition end to end against a local server: tables, yt-dlp, cuts, failures, resume."""

from __future__ import annotations

import hashlib
import json

import av
import numpy as np
import pytest

from prep.config.export import DownloadConfig
from prep.download.annotations import read_release
from prep.download.fetch import VideoUnavailableError, fetch_video
from prep.download.hdtf import acquire
from prep.errors import BadInputError
from prep.runner import run_plan
from prep.subject import SubjectDir

NAME = "Ünï Anchor"  # spaces and unicode in a video name


def _tables(folder, url: str, gone_url: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "XX_video_url.txt").write_text(
        f"{NAME} | {url}\nGone {gone_url}\nbroken-line-without-url\n", encoding="utf-8"
    )
    (folder / "XX_annotion_time.txt").write_text(
        f"{NAME}.mp4 | 00:02-00:04 | 00:05-00:06.5 | 00:09-00:03 | 00:30-00:40\n"
        "Gone.mp4 00:01-00:02\n",
        encoding="utf-8",
    )
    (folder / "XX_crop_wh.txt").write_text(
        f"{NAME}_0.mp4 | 100 | 300 | 20 | 300\n{NAME}_1.mp4 | -50 | 200 | 0 | 200\n"
        "Gone_0.mp4 1 2 3\n",
        encoding="utf-8",
    )
    (folder / "XX_resolution.txt").write_text(f"{NAME}.mp4 | 1024\n", encoding="utf-8")


def _frames(path) -> tuple[int, int, bool]:
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        n = sum(1 for _ in c.decode(video=0))
        return n, v.codec_context.width, bool(c.streams.audio)


def test_tables_parse_leniently(tmp_path):
    _tables(tmp_path, "http://x/a.mp4", "http://x/b.mp4")
    rel = read_release(tmp_path)
    v = rel.videos[NAME]
    assert v.url == "http://x/a.mp4" and v.resolution == 1024
    assert [(c.start_s, c.end_s) for c in v.clips[:2]] == [(2.0, 4.0), (5.0, 6.5)]
    assert v.clips[2].problem and "ends before it starts" in v.clips[2].problem
    assert v.clips[0].crop_xywh == (100, 20, 300, 300)
    assert rel.video_of(f"{NAME}_1") is v and rel.video_of("Gone").clips[0].crop_xywh is None
    assert any("broken-line" in p for p in rel.problems) and any("crop" in p for p in rel.problems)
    with pytest.raises(BadInputError, match="no \\*_video_url.txt"):
        read_release(tmp_path / "nowhere")


@pytest.mark.slow
def test_acquire_downloads_cuts_and_records_failures(tmp_path, clip_server, clip_c03):
    root = tmp_path / "hdtf"
    _tables(root / "annotations", f"{clip_server.url}/anchor.mp4", f"{clip_server.url}/gone.mp4")
    rel = read_release(root / "annotations")
    cfg = DownloadConfig(size=128, retries=2, socket_timeout_s=5)
    res = acquire(root, [rel.videos[NAME], rel.videos["Gone"]], cfg)
    assert (root / f"{NAME}.mp4").read_bytes() == clip_c03.read_bytes()
    assert res.clips_ok == [f"{NAME}_0", f"{NAME}_1"]
    assert _frames(root / "processed" / f"{NAME}_0.mp4") == (50, 128, True)  # 2 s at 25 fps
    assert _frames(root / "processed" / f"{NAME}_1.mp4")[0] == 38  # 5.0 .. 6.5 s
    assert "ends before it starts" in res.clips_failed[f"{NAME}_2"]
    assert "no frame" in res.clips_failed[f"{NAME}_3"]  # range past the end of the 20 s clip
    assert "404" in res.videos_unavailable["Gone"]
    record = json.loads((root / "download_record.json").read_text(encoding="utf-8"))
    assert record["videos"]["Gone"]["status"] == "unavailable"
    assert record["clips"][f"{NAME}_2"]["status"] == "bad_range"
    lines = (root / "unavailable.txt").read_text(encoding="utf-8").splitlines()
    assert {ln.split("\t")[0] for ln in lines} == {"Gone", f"{NAME}_2", f"{NAME}_3"}
    # a second run downloads nothing and keeps the cut clips
    n_requests = len(clip_server.requests)
    acquire(root, [rel.videos[NAME]], cfg)
    assert len(clip_server.requests) == n_requests


def test_dropped_connection_resumes_with_range(tmp_path, clip_server, clip_c03):
    clip_server.drop_first["/anchor.mp4"] = 2
    cfg = DownloadConfig(retries=4, socket_timeout_s=5)
    path = fetch_video("anchor", f"{clip_server.url}/anchor.mp4", tmp_path, cfg)
    data = clip_c03.read_bytes()
    assert hashlib.sha1(path.read_bytes()).digest() == hashlib.sha1(data).digest()
    ranges = [r for p, r in clip_server.requests if p == "/anchor.mp4" and r]
    assert any(int(r[6:].split("-")[0] or 0) > 0 for r in ranges), clip_server.requests
    assert not list(tmp_path.glob("*.part"))


def test_404_is_unavailable_without_retrying(tmp_path, clip_server):
    with pytest.raises(VideoUnavailableError, match="404"):
        fetch_video("gone", f"{clip_server.url}/gone.mp4", tmp_path, DownloadConfig(retries=5))
    assert sum(p == "/gone.mp4" for p, _ in clip_server.requests) <= 2


@pytest.mark.slow
def test_download_stage_for_a_unicode_subject(tmp_path, compose_cfg, clip_server):
    root = tmp_path / "hdtf"
    _tables(root / "annotations", f"{clip_server.url}/anchor.mp4", f"{clip_server.url}/gone.mp4")
    subject = f"{NAME}_1"
    cfg = compose_cfg(
        "dataset=hdtf",
        f"dataset.root={root}",
        f"subject='{subject}'",
        "stage=download",
        "download.size=64",
    )
    out = run_plan(cfg, SubjectDir(tmp_path / "work" / "hdtf" / subject))
    assert out.results["download"].metrics["clips_ok"] == 2.0
    assert (root / "processed" / f"{subject}.mp4").exists()
    gone = compose_cfg("dataset=hdtf", f"dataset.root={root}", "subject=Gone_0", "stage=download")
    with pytest.raises(VideoUnavailableError, match="404"):
        run_plan(gone, SubjectDir(tmp_path / "work" / "hdtf" / "Gone_0"))
    every = compose_cfg(
        "dataset=hdtf",
        f"dataset.root={root}",
        "subject=all",
        "stage=download",
        "download.all_videos=true",
    )
    m = run_plan(every, SubjectDir(tmp_path / "work" / "hdtf" / "all")).results["download"].metrics
    assert m["videos_unavailable"] == 1.0 and m["clips_ok"] == 2.0  # listed, not fatal


def test_unwritable_root_is_one_clear_error(tmp_path):
    from prep.download.annotations import HdtfVideo

    blocker = tmp_path / "file"
    blocker.write_text("")  # a file where the root's parent folder should be (works as root too)
    with pytest.raises(BadInputError, match="cannot write HDTF downloads"):
        acquire(blocker / "hdtf", [HdtfVideo("a", "http://127.0.0.1:9/a.mp4")], DownloadConfig())


def test_killed_download_resumes_from_its_part_file(tmp_path, clip_server, clip_c03):
    data = clip_c03.read_bytes()
    (tmp_path / "anchor.mp4.part").write_bytes(data[: len(data) // 3])  # left by a killed job
    path = fetch_video("anchor", f"{clip_server.url}/anchor.mp4", tmp_path, DownloadConfig())
    assert path.read_bytes() == data
    gets = [r for p, r in clip_server.requests if p == "/anchor.mp4" and r]
    assert any(r.startswith(f"bytes={len(data) // 3}-") for r in gets), clip_server.requests


@pytest.mark.slow
def test_downloaded_video_feeds_the_hdtf_ingest(tmp_path, compose_cfg, clip_server):
    """After stage=download, dataset=hdtf ingests clip k from the raw video with the same tables:
    the ingest's on-the-fly cut and our processed/ clip hold the same frames."""
    root = tmp_path / "hdtf"
    ann = root / "annotations"
    ann.mkdir(parents=True)
    (ann / "RD_video_url.txt").write_text(f"Anchor {clip_server.url}/anchor.mp4\n")
    (ann / "RD_annotion_time.txt").write_text("Anchor.mp4 00:01-00:03 00:04-00:05\n")
    (ann / "RD_crop_wh.txt").write_text("Anchor_1.mp4 100 300 50 300\n")
    (ann / "RD_resolution.txt").write_text("Anchor.mp4 512\n")
    common = ("dataset=hdtf", f"dataset.root={root}", "subject=Anchor_1")
    run_plan(
        compose_cfg(*common, "stage=download", "download.size=300"),
        SubjectDir(tmp_path / "work" / "hdtf" / "Anchor_1"),
    )
    n_ours, w, _ = _frames(root / "processed" / "Anchor_1.mp4")
    subject = SubjectDir(tmp_path / "work" / "hdtf" / "Anchor_1")
    run_plan(compose_cfg(*common, "stage=extract_frames"), subject)
    assert n_ours == subject.n_frames == 25 and w == 300
    from prep.io.files import read_image

    ingest = [read_image(subject.frame_path(i)).astype(float) for i in (0, 24)]
    with av.open(str(root / "processed" / "Anchor_1.mp4")) as c:
        ours = [f.to_ndarray(format="rgb24").astype(float) for f in c.decode(video=0)]
    assert ingest[0].shape == (300, 300, 3)  # the ingest applied the same crop window
    for a, b in zip(ingest, (ours[0], ours[24]), strict=True):  # same instants, same window
        assert np.abs(a - b).mean() < 6.0
