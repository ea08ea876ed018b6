"""The README's first screen gets a new user to their own documents, and names every way in."""

import re
from pathlib import Path

README = Path(__file__).parent.parent / "README.md"
FIRST_SCREEN = 40  # lines of a 40-row terminal


def first_screen() -> str:
    return "\n".join(README.read_text(encoding="utf-8").splitlines()[:FIRST_SCREEN])


def test_quick_start_shows_indexing_your_own_folder_and_asking_it():
    screen = first_screen()
    own_folder = re.search(r"^bin/qa index (?!--)\S+.*$", screen, re.MULTILINE)
    assert own_folder, "no `bin/qa index FOLDER` on the README's first screen"
    assert re.search(r"^bin/qa (ask|chat)\b", screen[own_folder.end():], re.MULTILINE), "nothing asked after indexing"


def test_readme_names_help_version_and_completion():
    text = README.read_text(encoding="utf-8")
    for flag in ("--version", "-h", "--install-completion"):
        assert flag in text, flag
