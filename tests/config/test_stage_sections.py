"""Every stage's settings are found from its name (issue 14 item 2): ``stage=X`` reads the section
``X`` (and ``conf/stage/X.yaml`` says so), never a section named otherwise.

The sections shared by several stages (the models, the Trainer, the camera, the input) are the
only others a stage may declare; a stage-specific section under another name, or a stage whose
``conf/stage/X.yaml`` does not point at its section, fails here.
"""

from __future__ import annotations

import pytest

from prep.pipeline import BUILTIN_STAGES, registered_stages
from tests.conftest import REPO, compose

# Sections several stages read: the input, the models, the Lightning Trainer, the mission's camera.
SHARED = {"dataset", "sequence", "flame", "bfm", "trainer", "intrinsics", "same_person"}
# The project's own stages: toy stages other test modules register are not configured in conf/.
STAGES = {n: s for n, s in registered_stages().items() if n in BUILTIN_STAGES}


@pytest.mark.parametrize("name", sorted(STAGES))
def test_a_stage_declares_only_its_own_section_and_the_shared_ones(name):
    own = set(STAGES[name].config) - SHARED
    assert own <= {name}, f"stage {name} reads {sorted(own)}: its settings belong in {name}.*"


@pytest.mark.parametrize("name", sorted(STAGES))
def test_the_stage_yaml_names_the_section(name):
    text = (REPO / "conf" / "stage" / f"{name}.yaml").read_text()
    assert f"name: {name}" in text
    if name in STAGES[name].config:
        assert f"settings in {name}.*" in text, f"conf/stage/{name}.yaml: point at {name}.*"


def test_every_stage_section_composes_under_the_stage_name():
    cfg = compose()
    for name, stage in STAGES.items():
        if name in stage.config:
            assert hasattr(cfg, name), f"no section {name} for stage {name}"
