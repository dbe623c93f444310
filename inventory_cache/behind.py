"""Redis behind the ledger: found per slot group, marked, healed by `warmup`.

Redis can come back *behind* what PostgreSQL committed: an AOF `everysec` tail lost in a
crash after the worker had written it, a replica promoted before it received the last
writes, an old backup restored. Redis itself cannot tell: its readiness markers are still
there. PostgreSQL can: every batch the worker commits records, in the same transaction,
the newest stream entry of each group it wrote (`ledger_marks`: entry id and op id).
Redis holds everything PostgreSQL committed exactly when it still holds that entry, with
that op, in the group's stream (a stream is a prefix of the group's history: a script's
change and its XADD are one atomic step, and AOF and replication keep order). So a group
is behind when that entry

- is missing although the stream still reaches back to it (a hole), or the stream stops
  before it (its last generated id is older);
- exists but carries another op (a different history that reused the id).

The worker trims only acknowledged entries older than `RECENT_MS`; so a missing entry
younger than that is lost, and an older one missing from a stream that starts after it
was trimmed and proves nothing either way (the group then counts as not behind).

A group found behind is *marked*: its readiness marker is deleted, so every script of the
group (reads and writes) answers `not_ready` at once, and `<prefix>:{g}:behind` keeps why,
for `/readyz`, `verify` and the operator. The other groups keep serving. `warmup` heals
the group from PostgreSQL and writes `<prefix>:{g}:healed`, the newest entry the heal
covered, which stands in for that entry until the worker commits newer ones.

Checked by the API before it re-sends the first calls a server refused with NOSCRIPT (a
restarted Redis or a promoted replica has an empty script cache, so no script of a
changed server runs before the check), at the API's start-up, by `/readyz`, and by the
worker before it reads anything after a start or a lost Redis connection and every few
seconds. The happy path pays one small insert per batch.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import sqlalchemy as sa

from inventory_cache.keys import Keys
from persistence.events import StreamId, op_of, text
from persistence.ledger import marks_json
from persistence.models import LedgerMark

# Compact `ledger_marks` into one row once it holds more rows than this.
COMPACT_ABOVE = 64
# The worker never trims stream entries younger than this (`WorkerConfig.keep_ms`).
RECENT_MS = 3_600_000


@dataclass(frozen=True, slots=True, order=True)
class Mark:
    """The newest stream entry of one group that PostgreSQL committed."""

    ms: int
    seq: int
    op: str

    @property
    def entry_id(self) -> str:
        return str(StreamId(self.ms, self.seq))


def _merge(rows: Sequence[str]) -> dict[int, Mark]:
    out: dict[int, Mark] = {}
    for raw in rows:
        for g, (ms, seq, op) in orjson.loads(raw).items():
            mark = Mark(int(ms), int(seq), str(op))
            group = int(g)
            cur = out.get(group)
            if cur is None or (cur.ms, cur.seq) < (mark.ms, mark.seq):
                out[group] = mark
    return out


def load_marks(engine: sa.Engine, *, compact: bool = False) -> dict[int, Mark]:
    """Each group's newest committed entry. With `compact`, the rows read are replaced by
    one (in one transaction; rows committed meanwhile are left alone), once there are more
    than `COMPACT_ABOVE`."""
    m = LedgerMark
    with engine.begin() as conn:
        rows = conn.execute(sa.select(m.id, m.marks)).all()
        marks = _merge([r.marks for r in rows])
        if compact and len(rows) > COMPACT_ABOVE:
            conn.execute(sa.delete(m).where(m.id.in_([r.id for r in rows])))
            merged = {g: (k.ms, k.seq, k.op) for g, k in marks.items()}
            conn.execute(sa.insert(m).values(marks=marks_json(merged)))
    return marks


# ---------------------------------------------------------------------------- Redis side
def probe(pipe: Any, keys: Keys, marks: Mapping[int, Mark]) -> list[int]:
    """Queue on `pipe` (sync or async) the reads `judge` needs first; returns the groups in
    order. The stream's own description (`probe_streams`) is asked for only where the
    ledger's entry is not found: in steady state none, so a readiness check costs two
    small replies per group."""
    groups = sorted(marks)
    for g in groups:
        pipe.get(keys.healed(g))
        pipe.xrange(keys.events(g), min=marks[g].entry_id, max=marks[g].entry_id)
    return groups


def unfound(groups: Sequence[int], marks: Mapping[int, Mark], replies: Sequence[Any]) -> list[int]:
    """The groups whose committed entry `probe` found neither healed over nor in Redis."""
    return [
        g
        for i, g in enumerate(groups)
        if not _healed(replies[2 * i], marks[g]) and not _listed(replies[2 * i + 1])
    ]


def probe_streams(pipe: Any, keys: Keys, groups: Sequence[int]) -> None:
    for g in groups:
        pipe.xinfo_stream(keys.events(g))


def _healed(reply: Any, mark: Mark) -> bool:
    return isinstance(reply, bytes | str) and StreamId.parse(reply) >= (mark.ms, mark.seq)


def _listed(reply: Any) -> bool:
    return isinstance(reply, list) and bool(reply)


def judge(
    groups: Sequence[int],
    marks: Mapping[int, Mark],
    replies: Sequence[Any],
    streams: Mapping[int, Any],
    now_ms: int,
) -> dict[int, str]:
    """The groups behind the ledger, each with the reason (from `probe`'s replies, and
    `probe_streams`' for the `unfound` groups)."""
    behind: dict[int, str] = {}
    for i, g in enumerate(groups):
        mark = marks[g]
        healed, found = replies[2 * i : 2 * i + 2]
        want = (mark.ms, mark.seq)
        if _healed(healed, mark):
            continue
        if _listed(found):
            op = op_of(found[0][1])
            if op != mark.op:
                behind[g] = (
                    f"entry {mark.entry_id} is {op!r} in Redis but {mark.op!r} in the ledger"
                )
            continue
        info = streams.get(g)
        if isinstance(info, BaseException) or not isinstance(info, dict):
            behind[g] = f"Redis has no event stream; the ledger committed up to {mark.entry_id}"
            continue
        last = StreamId.parse(info["last-generated-id"])
        first = info.get("first-entry")
        if last < want:
            behind[g] = (
                f"Redis's events end at {last}; the ledger committed {mark.entry_id} ({mark.op})"
            )
        elif (first and StreamId.parse(first[0]) <= want) or mark.ms > now_ms - RECENT_MS:
            behind[g] = f"entry {mark.entry_id} ({mark.op}) committed by the ledger is lost"
    return behind


def mark_commands(pipe: Any, keys: Keys, behind: Mapping[int, str], now_ms: int) -> None:
    """Queue: each group loses its readiness marker and records why it is behind."""
    for g, reason in sorted(behind.items()):
        pipe.set(keys.behind(g), orjson.dumps({"reason": reason, "since": now_ms}))
        pipe.delete(keys.ready(g))


def find(redis: Any, keys: Keys, marks: Mapping[int, Mark]) -> dict[int, str]:
    pipe = redis.pipeline(transaction=False)
    groups = probe(pipe, keys, marks)
    replies = pipe.execute(raise_on_error=False)
    streams: dict[int, Any] = {}
    if missing := unfound(groups, marks, replies):
        pipe = redis.pipeline(transaction=False)
        probe_streams(pipe, keys, missing)
        streams = dict(zip(missing, pipe.execute(raise_on_error=False), strict=True))
    return judge(groups, marks, replies, streams, int(time.time() * 1000))


def mark(redis: Any, keys: Keys, behind: Mapping[int, str]) -> None:
    if not behind:
        return
    pipe = redis.pipeline(transaction=False)
    mark_commands(pipe, keys, behind, int(time.time() * 1000))
    pipe.execute()


def check(redis: Any, engine: sa.Engine, keys: Keys, *, compact: bool = False) -> dict[int, str]:
    """Find the groups behind the ledger and mark those not marked yet (sync clients:
    worker, CLI); returns the newly marked ones, so each gap is reported once."""
    found = find(redis, keys, load_marks(engine, compact=compact))
    if found:
        pipe = redis.pipeline(transaction=False)
        for g in found:
            pipe.exists(keys.behind(g))
        known = {g for g, n in zip(found, pipe.execute(), strict=True) if n}
        found = {g: reason for g, reason in found.items() if g not in known}
    mark(redis, keys, found)
    return found


def marked(redis: Any, keys: Keys) -> dict[int, dict[str, Any]]:
    """The groups marked behind and not healed yet, with their record."""
    pipe = redis.pipeline(transaction=False)
    for g in keys.all_groups():
        pipe.get(keys.behind(g))
    return {
        g: orjson.loads(raw)
        for g, raw in zip(keys.all_groups(), pipe.execute(), strict=True)
        if raw is not None
    }


def guard(redis: Any, engine: sa.Engine, keys: Keys) -> Callable[[], Awaitable[Any]]:
    """The batcher's `on_new_server`: the check, before any script runs on that server."""

    async def run() -> Any:
        return await check_async(redis, engine, keys)

    return run


async def check_async(redis: Any, engine: sa.Engine | None, keys: Keys) -> dict[int, Any]:
    """The API's readiness rule for the ledger: groups already marked behind, plus those
    found now (and marked) when PostgreSQL answers. Group -> reason."""
    from anyio import to_thread

    out: dict[int, Any] = {}
    if engine is not None:
        try:
            marks = await to_thread.run_sync(load_marks, engine)
        except Exception:
            marks = {}  # PostgreSQL away: nothing to compare with, the markers still count
        if marks:
            pipe = redis.pipeline(transaction=False)
            groups = probe(pipe, keys, marks)
            replies = await pipe.execute(raise_on_error=False)
            streams: dict[int, Any] = {}
            if missing := unfound(groups, marks, replies):
                pipe = redis.pipeline(transaction=False)
                probe_streams(pipe, keys, missing)
                replies_2 = await pipe.execute(raise_on_error=False)
                streams = dict(zip(missing, replies_2, strict=True))
            found = judge(groups, marks, replies, streams, int(time.time() * 1000))
            if found:
                pipe = redis.pipeline(transaction=False)
                mark_commands(pipe, keys, found, int(time.time() * 1000))
                await pipe.execute()
            out.update(found)
    pipe = redis.pipeline(transaction=False)
    for g in keys.all_groups():
        pipe.get(keys.behind(g))
    for g, raw in zip(keys.all_groups(), await pipe.execute(), strict=True):
        if raw is not None and g not in out:
            out[g] = orjson.loads(raw)["reason"]
    return out


# ---------------------------------------------------------------------------- healing
# The kinds of key of a group that warmup rebuilds from PostgreSQL (keys.py).
STATE_KINDS = ("s", "b", "r", "t", "op", "o", "ti", "cl", "cc", "pq", "nc")


def clear_state(redis: Any, keys: Keys, groups: Sequence[int]) -> int:
    """Delete what behind groups hold of the stock state (not their streams, markers or
    caches), so that warmup restores it whole from PostgreSQL instead of keeping a stale
    copy. The index of each order and transfer found there goes too, wherever its group:
    it may hold a decision (a cancel, say) that the ledger has and the part lost, or the
    reverse. The groups must not be ready meanwhile (no script writes to them). One SCAN
    of the prefix, whatever the number of groups."""
    wanted = set(groups)
    if not wanted:
        return 0
    pattern = keys.key_pattern(*STATE_KINDS)
    names: list[Any] = [keys.expiry(g) for g in sorted(wanted)]
    for raw in redis.scan_iter(match=keys.scan_pattern(), count=1000):
        m = pattern.match(text(raw))
        if m is None or int(m[1]) not in wanted:
            continue
        names.append(raw)
        if m[2] == "r":
            names.append(keys.order_index(m[3]))
        elif m[2] == "t":
            names.append(keys.transfer_index(m[3]))
    deleted = 0
    for i in range(0, len(names), 500):
        pipe = redis.pipeline(transaction=False)
        for name in names[i : i + 500]:
            pipe.delete(name)
        deleted += sum(int(n) for n in pipe.execute())
    return deleted


def healed(redis: Any, keys: Keys, marks: Mapping[int, Mark], groups: Sequence[int]) -> None:
    """After warmup restored `groups`: each records the newest entry the heal covered and
    loses its behind record (warmup sets the readiness markers next)."""
    pipe = redis.pipeline(transaction=False)
    for g in groups:
        if g in marks:
            pipe.set(keys.healed(g), marks[g].entry_id)
        pipe.delete(keys.behind(g))
    pipe.execute()
