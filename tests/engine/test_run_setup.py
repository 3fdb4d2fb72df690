"""What every run sets up: a fresh id (never repeated, not even by a forked child)
and, under a bare asyncio loop, the async library's name for anyio's lookups."""

from __future__ import annotations

import asyncio
import os
import re

import sniffio

from legato._runid import new_run_id as _new_run_id
from legato.engine import Pipeline


async def test_every_run_gets_its_own_id() -> None:
    p = Pipeline("ids")

    @p.step
    async def echo(x: int) -> int:
        return x

    ids = [(await p.run(x=i)).run_id for i in range(300)]
    assert len(set(ids)) == 300
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids)
    assert sorted(ids, key=lambda i: i[:12]) == ids  # time-ordered, as the store's look-ups need


def test_a_forked_child_draws_other_ids_than_its_parent() -> None:
    before = {_new_run_id() for _ in range(300)}  # leaves unused ids in the pool
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report its next ids and leave without any clean-up
        os.close(read)
        os.write(write, " ".join(_new_run_id() for _ in range(100)).encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        child = set(pipe.read().split())
    os.waitpid(pid, 0)
    parent = {_new_run_id() for _ in range(100)}
    assert len(child) == 100
    assert not child & parent
    assert not child & before


def test_a_run_under_plain_asyncio_names_the_library_and_restores_it() -> None:
    p = Pipeline("sniff")
    seen: list[str | None] = []

    @p.step
    async def probe(x: int) -> int:
        seen.append(sniffio.current_async_library_cvar.get())
        return x

    async def main() -> tuple[bool, str | None]:
        result = await p.run(x=1)
        return result.ok, sniffio.current_async_library_cvar.get()

    ok, after = asyncio.run(main())
    assert ok
    assert seen == ["asyncio"]  # set for the run ...
    assert after is None  # ... and reset when it ends
