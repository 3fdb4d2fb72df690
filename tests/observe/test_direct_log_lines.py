"""The access log's direct write (no LogRecord) writes exactly the line ``logging`` would,
and steps aside whenever anything else might want the record: another handler, a
filter, a handler level above the record's, a non-JSON format."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from legato.observe import configure_logging
from legato.observe._logging import direct_handler
from legato.server._access import Exchange, log_access

NAME = "legato.access"


@contextmanager
def alone() -> Iterator[None]:
    """The root logger without pytest's capturing handlers (added for each test phase),
    as under ``legato serve``."""
    root = logging.getLogger()
    saved = root.handlers[:]
    root.handlers = [h for h in saved if getattr(h, "_legato", False)]
    try:
        yield
    finally:
        root.handlers = saved


@pytest.fixture
def root_json() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    handler = configure_logging("info", stream=stream, static={"service": "gw"})
    yield stream
    logging.getLogger().removeHandler(handler)


def one_request() -> None:
    class Key:
        prefix = "lg_abcdefghi"

    scope = {"method": "POST", "path": "/v1/chat/completions", "state": {"api_key": Key()}}
    ex = Exchange("req_direct")
    ex.model = "gpt-fake"
    ex.used(12, 40, 0.00052)
    log_access(scope, ex, 200, 0.0123)


def without_ts(line: str) -> dict[str, object]:
    record = json.loads(line)
    assert isinstance(record.pop("ts"), str)
    return record


def test_the_direct_line_is_the_line_logging_writes(root_json: io.StringIO) -> None:
    access = logging.getLogger(NAME)
    passthrough = logging.Filter()  # lets everything through, but a filter means logging's path
    with alone():
        assert direct_handler(access, logging.INFO) is not None
        one_request()
        access.addFilter(passthrough)
        try:
            assert direct_handler(access, logging.INFO) is None
            one_request()
        finally:
            access.removeFilter(passthrough)
    direct, through_logging = root_json.getvalue().splitlines()
    assert without_ts(direct) == without_ts(through_logging)
    assert without_ts(direct)["msg"] == "POST /v1/chat/completions 200 12.3ms"
    assert without_ts(direct)["service"] == "gw"


def test_any_other_listener_gets_the_record_through_logging(root_json: io.StringIO) -> None:
    access = logging.getLogger(NAME)
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    keep = Keep()
    access.addHandler(keep)
    try:
        with alone():
            assert direct_handler(access, logging.INFO) is None
            one_request()
    finally:
        access.removeHandler(keep)
    assert [r.getMessage() for r in records] == ["POST /v1/chat/completions 200 12.3ms"]
    assert len(root_json.getvalue().splitlines()) == 1  # and the JSON line still written once


def test_a_handler_above_the_records_level_or_a_text_format_is_not_bypassed() -> None:
    stream = io.StringIO()
    handler = configure_logging("info", stream=stream)
    access = logging.getLogger(NAME)
    try:
        with alone():
            assert direct_handler(access, logging.INFO) is not None
            handler.setLevel(logging.WARNING)
            assert direct_handler(access, logging.INFO) is None
            one_request()
            assert stream.getvalue() == ""  # the handler's level still holds
            handler.setLevel(logging.NOTSET)
            configure_logging("info", stream=stream, format="text")
            assert direct_handler(access, logging.INFO) is None
    finally:
        for h in [h for h in logging.getLogger().handlers if getattr(h, "_legato", False)]:
            logging.getLogger().removeHandler(h)
