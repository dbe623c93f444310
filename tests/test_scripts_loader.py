"""The script loader on its own: names, key counts, includes, and the packaged wheel."""

from __future__ import annotations

import re
import zipfile
from pathlib import Path

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
    assert fakeredis.FakeRedis().eval(blanked.source, 1, "nokey") == b'{"err":"not_ready"}'


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
