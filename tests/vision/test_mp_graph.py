"""Native stderr of MediaPipe graphs goes to the log, not the terminal."""

import logging
import os

import numpy as np
import pytest

from prep.vision.mp_graph import native_stderr_to_log, open_graph


def test_native_lines_are_logged_at_debug(capfd, caplog):
    caplog.set_level(logging.DEBUG, logger="prep.vision.mp_graph")
    with native_stderr_to_log():
        os.write(2, b"W0000 calculator.cc:1] native chatter\n")
    assert "native chatter" not in capfd.readouterr().err
    rec = [r for r in caplog.records if "native chatter" in r.getMessage()]
    assert rec and rec[0].levelno == logging.DEBUG
    os.write(2, b"after the block\n")
    assert "after the block" in capfd.readouterr().err  # fd 2 restored


def test_failure_keeps_the_lines_as_warnings(caplog):
    with pytest.raises(RuntimeError), native_stderr_to_log():
        os.write(2, b"E0000 graph.cc:1] could not open model\n")
        raise RuntimeError("graph failed")
    rec = [r for r in caplog.records if "could not open model" in r.getMessage()]
    assert rec and rec[0].levelno == logging.WARNING


def test_real_graph_opens_quietly(capfd):
    pytest.importorskip("mediapipe")
    from mediapipe.python.solutions import face_detection

    g = open_graph(lambda: face_detection.FaceDetection(model_selection=0))
    try:
        assert g.process(np.zeros((32, 32, 3), np.uint8)).detections is None
    finally:
        g.close()
    err = capfd.readouterr().err
    assert "Feedback manager" not in err and "XNNPACK" not in err
