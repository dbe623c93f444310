"""Loads `lua/` (package data) into typed scripts: includes inlined, key counts checked.

As in BullMQ, a file is named `<operation>-<number of keys>.lua`; a header line
`KEYS[n..]` marks a script that takes more keys after its fixed ones. Shared functions
live in `lua/includes/` and are pulled in, once each, by `--- @include "name"`.

Every script's first line is a Redis 7 shebang declaring its flags, `#!lua` (a script that
writes) or `#!lua flags=no-writes` (one that only reads); the loader refuses a file without
one. The flags are why: Redis refuses a script that may write *before it runs* when memory
is over `maxmemory` (OOM), instead of failing at its first write that needs memory, which
would leave the writes before it applied. `no-writes` scripts (readiness, reconciliation
reads) keep running when memory is full. `allow-oom` is kept for scripts whose writes touch
a fixed handful of small keys whatever the load (the rate limiter, the scheduler's lease),
so that a full Redis does not also stop rate limiting or flip the scheduler's leadership,
and for those that undo a refused reservation attempt (`settle` with the transition
`release`, `index_drop`): they free what the attempt took, and refusing them would leave
its locks held until its TTL. `settle`'s other transitions (cancel, ship, expire) share its
flag: each only rolls forward what the order index decided first (`order_decide`, refused
on a full Redis before it runs), and completing it frees locks rather than taking memory.

fakeredis (the embedded demo) does not parse shebangs (its Lua sees `#` as a syntax error),
so for a fakeredis client `scripts_for` replaces the shebang line by an empty one (line
numbers in errors stay the same); fakeredis has no `maxmemory` to enforce anyway.
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
_SHEBANG = re.compile(r"^#!lua(?: flags=(?P<flags>[a-z-]+(?:,[a-z-]+)*))?[ \t]*$")
# The flags Redis 7 knows (`scripts_flags_def` in its script.c).
FLAGS = frozenset({"no-writes", "allow-oom", "allow-stale", "no-cluster", "allow-cross-slot-keys"})


class ScriptLoadError(Exception):
    """A script file is malformed: bad name, missing include, include cycle."""


@dataclass(frozen=True, slots=True)
class Script:
    name: str
    numkeys: int
    variadic: bool
    source: str
    sha: str
    flags: frozenset[str] = frozenset()

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


def _flags(name: str, raw: str) -> frozenset[str]:
    first = raw.split("\n", 1)[0]
    m = _SHEBANG.match(first)
    if not m:
        raise ScriptLoadError(
            f"{name}: the first line must be a shebang declaring the script's flags, "
            "'#!lua' (it writes) or '#!lua flags=no-writes' (it only reads)"
        )
    flags = frozenset(m["flags"].split(",")) if m["flags"] else frozenset()
    if unknown := sorted(flags - FLAGS):
        raise ScriptLoadError(f"{name}: unknown script flag(s) {', '.join(unknown)}")
    return flags


def is_fakeredis(client: object) -> bool:
    return type(client).__module__.startswith("fakeredis")


def scripts_for(client: object) -> dict[str, Script]:
    """The scripts as `client`'s server takes them: shebangs kept, except on fakeredis."""
    return load_scripts(shebang=not is_fakeredis(client))


def load_scripts(
    directory: Traversable | None = None, *, shebang: bool = True
) -> dict[str, Script]:
    """Every script of `directory` (default: the package's `lua/`), by operation name.

    `shebang=False` blanks each shebang line, for servers that do not parse them.
    """
    root = directory or lua_dir()
    inc_dir = root / "includes"
    includes = {}
    if inc_dir.is_dir():
        includes = {
            f.name.removesuffix(".lua"): f.read_text()
            for f in inc_dir.iterdir()
            if f.name.endswith(".lua")
        }
    for name, text in includes.items():
        if text.startswith("#!"):
            raise ScriptLoadError(f"includes/{name}.lua: only a script's first line has a shebang")
    scripts: dict[str, Script] = {}
    for f in sorted(root.iterdir(), key=lambda t: t.name):
        if not f.name.endswith(".lua"):
            continue
        m = _NAME.match(f.name)
        if not m:
            raise ScriptLoadError(f"{f.name}: name must be <operation>-<keys>.lua")
        raw = f.read_text()
        flags = _flags(f.name, raw)
        source = _inline(raw, includes, (m["name"],), set())
        if not shebang:
            source = "\n" + source.split("\n", 1)[1]
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
            flags=flags,
        )
    return scripts
