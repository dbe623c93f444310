"""Every Lua script has one handle in `script_calls.py`, and each handle follows its
script's header: its key parameters are the script's keys (a sequence for `KEYS[n+1..]`),
its other parameters the header's arguments, in order."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import pytest

from inventory_cache import script_calls
from inventory_cache.script_calls import Call
from inventory_cache.scripts import load_scripts

SCRIPTS = load_scripts()


def handles() -> dict[str, Callable[..., Call]]:
    return {
        name: fn
        for name, fn in vars(script_calls).items()
        if inspect.isfunction(fn) and fn.__module__ == script_calls.__name__
    }


def test_every_script_has_one_handle_and_every_handle_a_script() -> None:
    assert sorted(handles()) == sorted(SCRIPTS)


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_the_handle_follows_the_header(name: str) -> None:
    script, handle = SCRIPTS[name], handles()[name]
    params = list(inspect.signature(handle).parameters.values())
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in params), name
    keys = [p for p in params if p.annotation == "KeyName"]
    tail = [p for p in params if p.annotation == "Sequence[KeyName]"]
    args = [p for p in params if p not in keys and p not in tail]
    assert len(keys) == script.numkeys, f"{name}: {len(keys)} key parameters"
    assert len(tail) == (1 if script.variadic else 0), f"{name}: KEYS[n..] parameter"
    assert params[: len(keys) + len(tail)] == keys + tail, f"{name}: keys come first"
    assert len(args) == len(script.argv), f"{name}: {len(args)} for ARGV {script.argv}"

    # Built in the order of its parameters: each value lands where its header puts it.
    values: dict[str, Any] = {}
    expected_args: list[Any] = []
    for p in args:
        if p.annotation == "bool":
            values[p.name] = True
            expected_args.append("1")
        elif p.annotation.startswith("Sequence["):
            values[p.name] = [p.name, p.name]
            expected_args.extend([p.name, p.name])
        else:
            values[p.name] = p.name
            expected_args.append(p.name)
    for p in keys:
        values[p.name] = p.name
    for p in tail:
        values[p.name] = [p.name]
    call = handle(**values)
    assert call.script == name
    assert call.keys == [p.name for p in keys] + [p.name for p in tail]
    assert call.args == expected_args
    script.check_keys(call.keys)
