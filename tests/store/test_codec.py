"""How step outputs are written to the store: lossless where possible, a clear
refusal where nothing can write the value."""

from __future__ import annotations

import datetime as dt
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from legato.store._codec import Encoded, NotSerialisable, decode, encode


@dataclass(frozen=True)
class Point:
    x: int
    y: int


@pytest.mark.parametrize(
    "value",
    [
        None,
        "naïve \u2603 text",
        3,
        2.5,
        True,
        [1, "a", None],
        {"a": {"b": [1, 2]}},
        (1, (2, 3)),
        b"\x00\xff bytes",
        {1, 2, 3},
        {1: "int keys"},
        {"__legato__": "a user key that looks like our tag"},
        Point(1, 2),
        dt.datetime(2026, 12, 5, 12, 0, tzinfo=dt.UTC),
        [Point(0, 0), (b"x", {"k": (1,)})],
    ],
)
def test_values_round_trip_to_an_equal_value_of_the_same_type(value: Any) -> None:
    back = decode(encode(value))
    assert back == value
    assert type(back) is type(value)


def test_json_values_stay_readable_json() -> None:
    assert encode({"a": [1, "x", None]}) == '{"a":[1,"x",null]}'


def test_a_local_class_travels_by_value() -> None:
    @dataclass
    class Local:  # not importable by name: plain pickle refuses it
        n: int

    back = decode(encode(Local(7)))
    assert back.n == 7


def test_encoded_text_is_written_as_is() -> None:
    text = encode([1, 2])
    assert encode(Encoded(text)) == text


def _generator() -> Iterator[int]:
    yield 1


def _open_file(tmp_path: Path) -> Any:
    return (tmp_path / "f.txt").open("w")


UNSTORABLE: dict[str, Callable[[Path], Any]] = {
    "lock": lambda _: threading.Lock(),
    "socket": lambda _: socket.socket(),
    "generator": lambda _: _generator(),
    "open file": _open_file,
    "nested lock": lambda _: {"ok": 1, "bad": [threading.Lock()]},
}


@pytest.mark.parametrize("kind", sorted(UNSTORABLE))
def test_values_nothing_can_write_raise_not_serialisable(kind: str, tmp_path: Path) -> None:
    value = UNSTORABLE[kind](tmp_path)
    try:
        with pytest.raises(NotSerialisable):
            encode(value)
    finally:
        close = getattr(value, "close", None)
        if callable(close):
            close()
