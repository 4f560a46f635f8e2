"""A repository writer's YAML against the setters: a file built to exhaust the controller (an
alias bomb, a file over the size limit) is refused by ``controllers.safeyaml``'s limits before
anything is composed, left unchanged and listed as a problem file, while the other files of
the update are still set. ``docs/security.md`` cites this file."""

from __future__ import annotations

import time
from pathlib import Path

from image_automation.api_v1 import ImageRef
from image_automation.setters import update_with_setters

REFS = {"apps:web": ImageRef(name="ghcr.io/org/web", tag="1.2.0")}
MARKED = 'image: ghcr.io/org/web:1.0.0 # {"$imagepolicy": "apps:web"}\n'
SET = 'image: ghcr.io/org/web:1.2.0 # {"$imagepolicy": "apps:web"}\n'


def alias_bomb(levels: int = 12) -> str:
    """Each level a list of ten aliases of the one before: 10**levels nodes once expanded."""
    lines = ['a0: &a0 ["lol"]']
    for level in range(1, levels):
        previous = f"*a{level - 1}"
        lines.append(f"a{level}: &a{level} [{', '.join([previous] * 10)}]")
    return "\n".join(lines) + "\n" + MARKED


def test_an_alias_bomb_is_a_problem_file_refused_before_it_is_expanded(tmp_path: Path) -> None:
    (tmp_path / "bomb.yaml").write_text(alias_bomb())
    (tmp_path / "app.yaml").write_text(MARKED)

    started = time.monotonic()
    update = update_with_setters(tmp_path, REFS)

    assert time.monotonic() - started < 5
    assert update.problem_files == ["bomb.yaml"]
    assert update.files == {"app.yaml": SET.encode()}


def test_a_file_over_the_size_limit_is_a_problem_file(tmp_path: Path) -> None:
    (tmp_path / "huge.yaml").write_text(MARKED + "# padding\n" * 1_000_000)
    (tmp_path / "app.yaml").write_text(MARKED)

    update = update_with_setters(tmp_path, REFS)

    assert update.problem_files == ["huge.yaml"]
    assert update.files == {"app.yaml": SET.encode()}
