"""The script loader on its own: names, key counts, includes, and the packaged wheel."""

from __future__ import annotations

import re
import zipfile
from pathlib import Path
from typing import cast

import pytest

from inventory_cache.scripts import ScriptLoadError, load_scripts, lua_dir, scripts_for

ROOT = Path(__file__).resolve().parent.parent


def write(tmp: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = tmp / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp


def test_every_script_declares_its_keys_and_argv_and_uses_no_other_keys() -> None:
    scripts = load_scripts()
    assert len(scripts) >= 20
    for name, script in scripts.items():
        raw = next(p for p in Path(str(lua_dir())).glob(f"{name}-*.lua")).read_text()
        assert raw.split("\n", 1)[1].startswith("--[["), name
        header = raw.split("]]", 1)[0]
        for i in range(1, script.numkeys + 1):
            assert f"KEYS[{i}]" in header, f"{name}: KEYS[{i}] undocumented"
        assert "Output:" in header, name
        used = {int(n) for n in re.findall(r"KEYS\[(\d+)\]", raw.split("]]", 1)[1])}
        assert all(n <= script.numkeys for n in used), f"{name} reads KEYS beyond its count"
        assert "TIME" not in raw and "math.random" not in raw, f"{name} is not deterministic"


def test_includes_are_inlined_once() -> None:
    source = load_scripts()["settle"].source
    assert "@include" not in source
    assert source.count("local function settle_part") == 1
    assert source.count("local function reply") == 1


def test_every_script_declares_its_flags_and_only_readers_say_no_writes() -> None:
    """Redis refuses a script that may write before it runs when memory is full, so no
    script stops halfway at its first write that needs memory; readers keep running."""
    writes = re.compile(r"rcall\('(SET|HSET|HINCRBY|XADD|ZADD|ZREM|DEL|PEXPIRE|PEXPIREAT|INCR)'")
    for name, script in load_scripts().items():
        raw = next(p for p in Path(str(lua_dir())).glob(f"{name}-*.lua")).read_text()
        assert raw.startswith("#!lua"), name
        assert script.source.startswith("#!lua"), name
        if "no-writes" in script.flags:
            assert not writes.search(script.source), f"{name} writes but says no-writes"
    assert load_scripts()["check_ready"].flags == {"no-writes"}
    assert load_scripts()["reserve"].flags == frozenset()


def test_a_script_without_a_shebang_is_an_error(tmp_path: Path) -> None:
    write(tmp_path, {"a-1.lua": "--[[ KEYS[1] Output: x ]]\nreturn 1\n"})
    with pytest.raises(ScriptLoadError, match="shebang"):
        load_scripts(tmp_path)


def test_an_unknown_script_flag_is_an_error(tmp_path: Path) -> None:
    write(tmp_path, {"a-1.lua": "#!lua flags=no-writes,never-fail\nreturn 1\n"})
    with pytest.raises(ScriptLoadError, match="never-fail"):
        load_scripts(tmp_path)


def test_fakeredis_gets_the_scripts_with_the_shebang_line_blanked() -> None:
    import fakeredis

    plain = load_scripts()["check_ready"]
    (blanked,) = [s for n, s in scripts_for(fakeredis.FakeRedis()).items() if n == "check_ready"]
    assert blanked.source == "\n" + plain.source.split("\n", 1)[1]
    assert blanked.flags == plain.flags
    reply = cast(bytes, fakeredis.FakeRedis().eval(blanked.source, 1, "nokey"))
    assert reply == b'{"err":"not_ready"}'


def test_missing_include_is_an_error(tmp_path: Path) -> None:
    write(tmp_path, {"a-1.lua": '#!lua\n--[[ KEYS[1] Output: x ]]\n--- @include "nope"\n'})
    with pytest.raises(ScriptLoadError, match="missing include"):
        load_scripts(tmp_path)


def test_include_cycle_is_an_error(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "a-1.lua": '#!lua\n--- @include "x"\n',
            "includes/x.lua": '--- @include "y"\n',
            "includes/y.lua": '--- @include "x"\n',
        },
    )
    with pytest.raises(ScriptLoadError, match="cycle"):
        load_scripts(tmp_path)


def test_bad_file_name_is_an_error(tmp_path: Path) -> None:
    write(tmp_path, {"reserve.lua": "return 1\n"})
    with pytest.raises(ScriptLoadError, match="<operation>-<keys>"):
        load_scripts(tmp_path)


def test_key_count_is_checked_against_the_file_name() -> None:
    scripts = load_scripts()
    with pytest.raises(ValueError, match="takes 4 keys"):
        scripts["movement"].check_keys(["a", "b", "c"])
    with pytest.raises(ValueError, match="takes 4 keys"):
        scripts["movement"].check_keys(["a", "b", "c", "d", "e"])
    scripts["reserve"].check_keys(["a", "b", "c", "d", "e", "f"])


def test_wheel_ships_every_script_and_they_load_from_it(tmp_path: Path, wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as zf:
        zf.extractall(tmp_path / "site")
    packaged = tmp_path / "site" / "inventory_cache" / "lua"
    assert sorted(p.name for p in packaged.glob("*.lua")) == sorted(
        p.name for p in (ROOT / "lua").glob("*.lua")
    )
    assert load_scripts(packaged) == load_scripts(ROOT / "lua")


GOOD_HEADER = """#!lua
--[[
  Input:
    KEYS[1] first
    KEYS[2] second
    ARGV[1] one     ARGV[2] two
  Output: JSON {}
]]
return 1
"""


def test_a_well_formed_header_loads(tmp_path: Path) -> None:
    write(tmp_path, {"a-2.lua": GOOD_HEADER})
    assert load_scripts(tmp_path)["a"].numkeys == 2


@pytest.mark.parametrize(
    ("garbled", "complaint"),
    [
        (GOOD_HEADER.replace("    KEYS[2] second\n", ""), "KEYS\\[1\\] to KEYS\\[2\\]"),
        (GOOD_HEADER.replace("KEYS[2] second", "KEYS[1] second"), "lists KEYS\\[1\\], KEYS\\[1\\]"),
        (GOOD_HEADER.replace("KEYS[2] second", "KEYS[2] second\n    KEYS[3] third"), "KEYS"),
        (GOOD_HEADER.replace("KEYS[2] second", "KEYS[2] second\n    KEYS[4..] more"), "KEYS"),
        (GOOD_HEADER.replace("    ARGV[1] one     ARGV[2] two\n", ""), "ARGV"),
        (GOOD_HEADER.replace("ARGV[2] two", "ARGV[3] two"), "ARGV\\[1\\], ARGV\\[3\\]"),
        (GOOD_HEADER.replace("ARGV[2] two", "ARGV[1] two"), "ARGV"),
        (GOOD_HEADER.replace("  Output: JSON {}\n", ""), "Output"),
        (GOOD_HEADER.replace("  Input:\n", ""), "Input"),
        (GOOD_HEADER.replace("--[[", "-- a header").replace("]]", ""), "header"),
        (
            GOOD_HEADER.replace(
                "    ARGV[1] one     ARGV[2] two\n", "    ARGV none\n    ARGV[1] x\n"
            ),
            "ARGV none",
        ),
    ],
)
def test_a_garbled_header_is_an_error(tmp_path: Path, garbled: str, complaint: str) -> None:
    write(tmp_path, {"a-2.lua": garbled})
    with pytest.raises(ScriptLoadError, match=complaint):
        load_scripts(tmp_path)


def test_a_variadic_header_and_one_without_argv_load(tmp_path: Path) -> None:
    text = GOOD_HEADER.replace("KEYS[2] second", "KEYS[2] second\n    KEYS[3..] more")
    text = text.replace("    ARGV[1] one     ARGV[2] two\n", "    ARGV none\n")
    write(tmp_path, {"a-2.lua": text})
    assert load_scripts(tmp_path)["a"].variadic


@pytest.mark.parametrize(
    "include",
    [
        "local function one_thing() end\nlocal function another() end\n",
        "local function other_name() end\n",
        "-- nothing defined\n",
    ],
)
def test_an_include_holds_one_function_named_for_its_file(tmp_path: Path, include: str) -> None:
    text = GOOD_HEADER.replace("return 1", '--- @include "oneThing"\nreturn 1')
    write(tmp_path, {"a-2.lua": text, "includes/oneThing.lua": include})
    with pytest.raises(ScriptLoadError, match="one_thing"):
        load_scripts(tmp_path)


def _defined(text: str) -> list[str]:
    return re.findall(r"^local (?:function )?([A-Za-z_]+)", _code(text), re.MULTILINE)


def _code(text: str, strings: bool = False) -> str:
    """Lua without its comments and, unless `strings`, its string literals (what the
    names used are read from)."""
    text = re.sub(r"--\[\[.*?\]\]", "", text, flags=re.DOTALL)
    if not strings:
        text = re.sub(r"'[^'\n]*'", "''", text)
    return re.sub(r"--.*", "", text)


def test_every_file_includes_exactly_the_shared_functions_it_calls() -> None:
    """Each include pulls in what it calls itself, so a script names only what it uses:
    no include is missing (a call of nil at run time) or left over."""
    root = Path(str(lua_dir()))
    includes = sorted((root / "includes").glob("*.lua"))
    owner = {name: f.stem for f in includes for name in _defined(f.read_text())}
    for f in [*sorted(root.glob("*.lua")), *includes]:
        text = f.read_text()
        code = _code(text)
        used = {
            inc
            for name, inc in owner.items()
            if inc != f.stem and re.search(rf"(?<![\w.]){name}\b", code)
        }
        declared = set(re.findall(r'^--- @include "(\w+)"', text, re.MULTILINE))
        assert declared == used, f"{f.name}: includes {sorted(declared)}, calls {sorted(used)}"


def test_readiness_and_events_are_each_written_once() -> None:
    root = Path(str(lua_dir()))
    for f in [*root.glob("*.lua"), *(root / "includes").glob("*.lua")]:
        code = _code(f.read_text(), strings=True)
        if f.name != "assertReady.lua":
            assert "fail('not_ready')" not in code or f.name == "check_ready-1.lua", f.name
        if f.name != "emitEvent.lua":
            assert "'XADD'" not in code, f.name
