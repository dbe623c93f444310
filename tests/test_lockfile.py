"""requirements.lock pins the versions CI tested, and every install uses it: the test
command's bootstrap (so CI), the demo's and the Docker image."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
PIN = re.compile(r"^([A-Za-z0-9._-]+)==([^\s;]+)(?:\s*;\s*(.+))?$")


def pins() -> dict[str, list[tuple[str, str | None]]]:
    """Package -> (version, marker) for every pinned line (one per platform variant)."""
    out: dict[str, list[tuple[str, str | None]]] = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        m = PIN.match(line.strip())
        assert m, f"not an exact pin: {line!r}"
        out.setdefault(canonicalize_name(m[1]), []).append((m[2], m[3]))
    return out


def test_every_dependency_of_every_extra_is_pinned_within_its_range() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = [Requirement(r) for r in project["dependencies"]]
    for extra in project["optional-dependencies"].values():
        wanted += [Requirement(r) for r in extra]
    locked = pins()
    here = {"python_full_version": "3.11.7", "python_version": "3.11", "sys_platform": "linux"}

    for req in wanted:
        name = canonicalize_name(req.name)
        if name == "inventory-cache":
            continue  # an extra naming another extra of this project
        assert name in locked, f"{req.name} is not in requirements.lock"
        versions = [
            v for v, marker in locked[name] if marker is None or Marker(marker).evaluate(here)
        ]
        assert len(versions) == 1, (req.name, locked[name])
        assert req.specifier.contains(versions[0], prereleases=True), (req, versions[0])


def test_the_bootstrap_and_the_image_install_with_the_lock() -> None:
    bootstrap = (ROOT / "scripts" / "bootstrap.sh").read_text()
    dockerfile = (ROOT / "Dockerfile").read_text()

    assert bootstrap.count('"${lock[@]}"') == 2  # uv, and plain pip as the fallback
    assert 'lock=(-c "$root/requirements.lock")' in bootstrap
    assert '"$root/requirements.lock" | sha1sum' in bootstrap  # a new lock reinstalls
    assert "COPY pyproject.toml requirements.lock ./" in dockerfile
    assert "pip install -c requirements.lock" in dockerfile
