"""`.env.example` lists every setting that `settings.py` defines (read from the class, so a
setting added later is caught), with its true default, and nothing that is not one."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from inventory_cache.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
LINE = re.compile(r"^#?\s*(INVENTORY_[A-Z0-9_]+)=(.*)$")


def listed() -> dict[str, str]:
    found: dict[str, str] = {}
    for line in (ROOT / ".env.example").read_text().splitlines():
        if m := LINE.match(line):
            assert m.group(1) not in found, f"{m.group(1)} listed twice"
            found[m.group(1)] = m.group(2)
    return found


def test_every_setting_is_listed_and_every_listed_variable_is_a_setting() -> None:
    settings = {f"INVENTORY_{name.upper()}" for name in Settings.model_fields}

    assert set(listed()) == settings


def test_each_listed_value_is_the_settings_default(monkeypatch: pytest.MonkeyPatch) -> None:
    for variable in [v for v in os.environ if v.startswith("INVENTORY_")]:
        monkeypatch.delenv(variable)
    defaults = Settings()
    for variable, value in listed().items():
        name = variable.removeprefix("INVENTORY_").lower()
        if value == "":
            assert getattr(defaults, name) in (None, []), variable
            continue
        monkeypatch.setenv(variable, value)
        assert getattr(Settings(), name) == getattr(defaults, name), variable
        monkeypatch.delenv(variable)
