"""One home per convention (issue 15): the OpenCV/OpenGL flip and pinhole K are built in
`prep.models.camera` only, and crop/crop.npz is read by `CropTransforms.load` only.

The exports drifted because every module rebuilt these by hand. This test reads the code of
`prep` (strings and comments removed) and fails on any hand-built flip, K matrix or crop.npz read
outside the homes. `NOT_YET_MOVED` lists the places that predate the rule, in modules other
helpers were editing when it was written; the test also fails when one of them is cleaned up and
left on the list, so the list only shrinks.
"""

from __future__ import annotations

import io
import re
import tokenize
from pathlib import Path

PREP = Path(__file__).resolve().parents[1] / "prep"

RULES = {
    "flip": (re.compile(r"diag\s*\(\s*\[?\s*1(\.0*)?\s*,\s*-\s*1(\.0*)?\s*,\s*-\s*1"
                        r"|\(\s*1\.0*\s*,\s*-\s*1\.0*\s*,\s*-\s*1\.0*\s*\)"),
             "prep/models/camera.py"),
    "K": (re.compile(r"\[\s*\[\s*\w+\s*,\s*0(\.0*)?\s*,\s*\w+\s*\]\s*,\s*\[\s*0(\.0*)?\s*,"),
          "prep/models/camera.py"),
    "crop.npz": (re.compile(r"(load_npz|np\s*\.\s*load)\s*\(\s*[\w.\s]*crop_npz"),
                 "prep/geometry/crop.py"),
}  # fmt: skip

NOT_YET_MOVED: set[tuple[str, str]] = set()


def _code(path: Path) -> str:
    """The file's code with strings and comments blanked (docstrings may name conventions)."""
    out = []
    for tok in tokenize.generate_tokens(io.StringIO(path.read_text()).readline):
        if tok.type in (tokenize.STRING, tokenize.COMMENT):
            out.append(" ")
        elif tok.type in (tokenize.NEWLINE, tokenize.NL):
            out.append("\n")
        else:
            out.append(tok.string + " ")
    return "".join(out)


def _offences() -> set[tuple[str, str]]:
    found = set()
    root = PREP.parent
    for path in sorted(PREP.rglob("*.py")):
        rel = str(path.relative_to(root))
        code = _code(path)
        for rule, (pattern, home) in RULES.items():
            if rel != home and pattern.search(code):
                found.add((rel, rule))
    return found


def test_conventions_have_one_home():
    found = _offences()
    new = sorted(found - NOT_YET_MOVED)
    assert not new, f"rebuilt by hand outside its home (prep.models.camera, CropTransforms): {new}"
    moved = sorted(NOT_YET_MOVED - found)
    assert not moved, f"no longer offending: drop from NOT_YET_MOVED: {moved}"


def test_the_scan_sees_hand_built_conventions(tmp_path):
    """The patterns catch the forms the exports used to rebuild (so the main test can fail)."""
    samples = {
        "flip": "w2c = np.diag([1.0, -1.0, -1.0, 1.0])",
        "K": "K = np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1]])",
        "crop.npz": "c = load_npz(subject.crop_npz)",
    }
    for rule, line in samples.items():
        p = tmp_path / f"{rule.replace('.', '_')}.py"
        p.write_text(line + "\n")
        assert RULES[rule][0].search(_code(p)), rule
    doc = tmp_path / "doc.py"
    doc.write_text('"""R = diag(1, -1, -1) in a docstring is prose."""\n')
    assert not RULES["flip"][0].search(_code(doc))
