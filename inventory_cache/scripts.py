"""Loads `lua/` (package data) into typed scripts: includes inlined, key counts checked.

As in BullMQ, a file is named `<operation>-<number of keys>.lua`; a header line
`KEYS[n..]` marks a script that takes more keys after its fixed ones. Shared functions
live in `lua/includes/` and are pulled in, once each, by `--- @include "name"`.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources
from importlib.abc import Traversable
from pathlib import Path

_NAME = re.compile(r"^(?P<name>[a-z_]+)-(?P<keys>\d+)\.lua$")
_INCLUDE = re.compile(r'^--- @include "(?P<name>[A-Za-z0-9_]+)"\s*$', re.MULTILINE)
_VARIADIC = re.compile(r"KEYS\[(?P<first>\d+)\.\.\]")


class ScriptLoadError(Exception):
    """A script file is malformed: bad name, missing include, include cycle."""


@dataclass(frozen=True, slots=True)
class Script:
    name: str
    numkeys: int
    variadic: bool
    source: str
    sha: str

    def check_keys(self, keys: Iterable[str]) -> None:
        n = len(list(keys))
        if n < self.numkeys or (n > self.numkeys and not self.variadic):
            raise ValueError(f"{self.name} takes {self.numkeys} keys, got {n}")


def lua_dir() -> Traversable:
    """The installed package's `lua/` (wheel), or the checkout's top-level `lua/`."""
    packaged = resources.files("inventory_cache") / "lua"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parent.parent / "lua"


def _inline(source: str, includes: dict[str, str], stack: tuple[str, ...], done: set[str]) -> str:
    def sub(m: re.Match[str]) -> str:
        name = m.group("name")
        if name in stack:
            raise ScriptLoadError("include cycle: " + " -> ".join((*stack, name)))
        if name in done:
            return ""
        if name not in includes:
            raise ScriptLoadError(f"missing include {name!r}")
        done.add(name)
        return _inline(includes[name], includes, (*stack, name), done)

    return _INCLUDE.sub(sub, source)


def load_scripts(directory: Traversable | None = None) -> dict[str, Script]:
    root = directory or lua_dir()
    inc_dir = root / "includes"
    includes = {}
    if inc_dir.is_dir():
        includes = {
            f.name.removesuffix(".lua"): f.read_text()
            for f in inc_dir.iterdir()
            if f.name.endswith(".lua")
        }
    scripts: dict[str, Script] = {}
    for f in sorted(root.iterdir(), key=lambda t: t.name):
        if not f.name.endswith(".lua"):
            continue
        m = _NAME.match(f.name)
        if not m:
            raise ScriptLoadError(f"{f.name}: name must be <operation>-<keys>.lua")
        raw = f.read_text()
        source = _inline(raw, includes, (m["name"],), set())
        numkeys = int(m["keys"])
        v = _VARIADIC.search(raw)
        if v and int(v["first"]) != numkeys + 1:
            raise ScriptLoadError(f"{f.name}: KEYS[{v['first']}..] must follow its {numkeys} keys")
        scripts[m["name"]] = Script(
            name=m["name"],
            numkeys=numkeys,
            variadic=v is not None,
            source=source,
            sha=hashlib.sha1(source.encode()).hexdigest(),
        )
    return scripts
