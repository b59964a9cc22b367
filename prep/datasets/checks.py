"""Checks of a subject's source made around extraction, so bad input never replaces good output.

`check_source` runs before any stage of a plan starts (the runner's pre-flight): an empty,
corrupt or frameless file is refused while the frames extracted earlier are still in place.
`check_complete` runs after decoding: a file that stops well before the end its header announces
is named with both frame counts, and does not replace an earlier extraction without force=true.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from prep.datasets.base import Extracted, Source, load_image
from prep.errors import BadInputError
from prep.io.video import probe

if TYPE_CHECKING:
    from prep.config import Config

log = logging.getLogger(__name__)


def check_source(src: Source) -> None:
    """The source opens and its first frame decodes (first and last image of a folder).

    Raises:
        BadInputError: missing, empty or corrupt video, no video stream, unreadable image.
    """
    if src.kind == "video":
        probe(src.path)  # decodes the first frame of the video file
    else:
        load_image(src.images[0], src.alpha)
        load_image(src.images[-1], src.alpha)


def check_complete(cfg: Config, res: Extracted, replaced: int, force: bool) -> None:
    """Compare the frames decoded with the span the header announces; name a truncated file.

    Args:
        cfg: the run's config (extract_frames.fps, extract_frames.max_frames).
        res: what decoding produced.
        replaced: frames of an earlier extraction (other source or settings) taken away.
        force: the user asked to replace them regardless.

    Raises:
        BadInputError: the file looks truncated and would replace an earlier extraction.
    """
    info = res.info
    if info is None or not info.duration_s or not res.timestamps_s or cfg.extract_frames.max_frames:
        return
    fps = info.fps or 25.0
    end = min(res.end_s or info.duration_s, info.duration_s)
    last = res.start_s + res.timestamps_s[-1] + 1.0 / (cfg.extract_frames.fps or fps)
    if end - last <= max(0.5, 3.0 / fps):
        return
    n, span = len(res.timestamps_s), end - res.start_s
    expect = info.n_frames_header if span >= info.duration_s - 1e-6 else None
    expect = expect or int(round(span * (cfg.extract_frames.fps or fps)))
    what = (
        f"{info.path}: decoded {n} of the {expect} frames its header announces "
        f"(stopped at {last:.2f} s of {end:.2f} s); the file looks truncated"
    )
    if replaced and not force:
        raise BadInputError(
            f"{what}; the {replaced} frames extracted earlier were kept (force=true replaces them)"
        )
    log.warning("%s: only these %d frames are used", what, n)
