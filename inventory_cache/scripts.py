"""Loads `lua/` (package data) into typed scripts: includes inlined, key counts checked.

As in BullMQ, a file is named `<operation>-<number of keys>.lua`. After its shebang a
script opens with a `--[[ ... ]]` header whose `Input:` section lists, one a line,
`KEYS[1]` to `KEYS[n]` (n the number in the file name), then `KEYS[n+1..]` for a script
that takes more keys after its fixed ones, then its arguments `ARGV[1]`, `ARGV[2]`, ...
(several may share a line; `ARGV[k..]` for a repeated tail, `ARGV[#ARGV]` for a last
one; `ARGV none` for a script without), and whose `Output:` line says what it returns.
The loader refuses a header that does not (`_check_header`); each script's handle in
`script_calls.py` is checked against its header (`tests/test_script_calls.py`).

Shared functions live in `lua/includes/`, one function a file named for it (`assertReady.lua`
holds `assert_ready`), each pulling in what it calls, and are inlined once each by
`--- @include "name"`.

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
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from importlib.abc import Traversable
from pathlib import Path
from typing import Any

from redis.exceptions import NoScriptError

_NAME = re.compile(r"^(?P<name>[a-z_]+)-(?P<keys>\d+)\.lua$")
_INCLUDE = re.compile(r'^--- @include "(?P<name>[A-Za-z0-9_]+)"\s*$', re.MULTILINE)
_FUNCTION = re.compile(r"^local function ([A-Za-z_]+)", re.MULTILINE)
_BINDING = re.compile(r"^local ([a-z_]+) =", re.MULTILINE)
# The header's `Input:` section, up to its `Output:` line (the returns).
_SECTION = re.compile(r"^\s*Input:\s*$(?P<inputs>.*?)^\s*Output:", re.MULTILINE | re.DOTALL)
# A key listed: at the start of a line of the section.
_HEADER_KEY = re.compile(r"^\s*KEYS\[(?P<n>\d+)(?P<tail>\.\.)?\]", re.MULTILINE)
# An argument listed: at the start of a line, or a column of one (after two spaces);
# `ARGV[k]` inside a description is a reference, not a listing.
_HEADER_ARGV = re.compile(r"(?:^\s*|  )ARGV\[(?P<n>\d+(?:\.\.)?|#ARGV)\]", re.MULTILINE)
_NO_ARGV = re.compile(r"^\s*ARGV none\s*$", re.MULTILINE)
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
    # The arguments its header lists, in order: "1", "2", ..., then "k.." for a repeated
    # tail and "#ARGV" for a last one (what `script_calls.py`'s handles are checked against).
    argv: tuple[str, ...] = ()

    def check_keys(self, keys: Sequence[str]) -> None:
        n = len(keys)
        if n < self.numkeys or (n > self.numkeys and not self.variadic):
            raise ValueError(f"{self.name} takes {self.numkeys} keys, got {n}")


# One call as the batcher sends it: its script (None for a plain command) and the
# command's arguments (for a script, EVALSHA's: sha, key count, keys, args).
Command = tuple[Script | None, tuple[Any, ...]]


def noscript_refused(
    cmds: Sequence[Command], results: Sequence[Any]
) -> tuple[list[int], list[Script]]:
    """The script calls a server refused with NOSCRIPT (its script cache lost them: they
    did not run, so sending them again cannot apply anything twice), and the scripts to
    load before that, once each."""
    missing = [
        i
        for i, (cmd, r) in enumerate(zip(cmds, results, strict=True))
        if isinstance(r, NoScriptError) and cmd[0] is not None
    ]
    load = {s.name: s for i in missing if (s := cmds[i][0]) is not None}
    return missing, list(load.values())


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
        inlined = _inline(includes[name], includes, (*stack, name), done)
        _check_include(name, includes[name])
        return inlined

    return _INCLUDE.sub(sub, source)


def _check_include(name: str, text: str) -> None:
    """One function a file, named for it: `fooBar.lua` defines `foo_bar` (a file without
    a function holds one binding of that name instead, as `rcall.lua`)."""
    wanted = re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()
    functions = _FUNCTION.findall(text)
    defined = functions or _BINDING.findall(text)
    if defined != [wanted]:
        raise ScriptLoadError(
            f"includes/{name}.lua must define one function, {wanted}; it defines "
            + (", ".join(defined) or "none")
        )


def _check_header(file: str, raw: str, numkeys: int) -> tuple[bool, tuple[str, ...]]:
    """Check the header's `Input:` section against the key count. Returns whether the
    script takes more keys than `numkeys` (a `KEYS[numkeys+1..]` line), and the
    arguments listed (see `Script.argv`)."""
    lines = raw.split("\n")
    if len(lines) < 2 or not lines[1].startswith("--[["):
        raise ScriptLoadError(f"{file}: the shebang must be followed by a --[[ header ]]")
    header = raw.split("]]", 1)[0]
    found = _SECTION.search(header)
    if not found:
        raise ScriptLoadError(f"{file}: the header needs an 'Input:' section and an 'Output:' line")
    section = found["inputs"]
    keys = [(int(m["n"]), bool(m["tail"])) for m in _HEADER_KEY.finditer(section)]
    fixed = [n for n, tail in keys if not tail]
    tails = [n for n, tail in keys if tail]
    if fixed != list(range(1, numkeys + 1)) or tails not in ([], [numkeys + 1]):
        listed = ", ".join(f"KEYS[{n}{'..' if t else ''}]" for n, t in keys) or "none"
        raise ScriptLoadError(
            f"{file}: the header must list KEYS[1] to KEYS[{numkeys}] once each, in order "
            f"(then KEYS[{numkeys + 1}..] for more), one a line; it lists {listed}"
        )
    argv = [m["n"] for m in _HEADER_ARGV.finditer(section)]
    if _NO_ARGV.search(section):
        if argv:
            raise ScriptLoadError(f"{file}: the header says 'ARGV none' but lists ARGV")
        return bool(tails), ()
    numbered = [a for a in argv if a.isdigit()]
    rest = argv[len(numbered) :]
    if (
        not argv
        or [int(a) for a in numbered] != list(range(1, len(numbered) + 1))
        or rest
        not in ([], [f"{len(numbered) + 1}.."], ["#ARGV"], [f"{len(numbered) + 1}..", "#ARGV"])
    ):
        raise ScriptLoadError(
            f"{file}: the header must list ARGV[1], ARGV[2], ... once each, in order (or say "
            f"'ARGV none'); it lists {', '.join(f'ARGV[{a}]' for a in argv) or 'none'}"
        )
    return bool(tails), tuple(argv)


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
        variadic, argv = _check_header(f.name, raw, numkeys)
        scripts[m["name"]] = Script(
            name=m["name"],
            numkeys=numkeys,
            variadic=variadic,
            source=source,
            sha=hashlib.sha1(source.encode()).hexdigest(),
            flags=flags,
            argv=argv,
        )
    return scripts
