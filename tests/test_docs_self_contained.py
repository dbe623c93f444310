"""The repository stands on its own: no file cites documents that are not in it, and
every relative link in the Markdown documents leads to a file that is."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Spelled in pieces so that this file does not cite them itself.
OUTSIDE = ["SPEC" + " §", "SPEC" + "'s", "PERF" + ".md", "/work/" + "shared"]


def tracked() -> list[Path]:
    names = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    return [ROOT / n for n in names if (ROOT / n).is_file()]


def test_no_file_cites_a_document_outside_the_repository() -> None:
    citing = {
        f"{path.relative_to(ROOT)}: {needle}"
        for path in tracked()
        if path.suffix in {".py", ".md", ".lua", ".sh", ".toml", ".yml", ".txt", ""}
        for needle in OUTSIDE
        if needle in path.read_text(errors="replace")
    }

    assert citing == set()


def test_relative_links_in_the_docs_resolve() -> None:
    broken = []
    for doc in [p for p in tracked() if p.suffix == ".md"]:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", doc.read_text()):
            if "://" in target:
                continue
            if not (doc.parent / target).exists():
                broken.append(f"{doc.relative_to(ROOT)} -> {target}")

    assert broken == []
