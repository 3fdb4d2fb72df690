from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace import TracerProvider

from legato.observe import REDACTED, Redactor, configure_logging

SECRET = "sk-ant-api03-canary0123456789"


@pytest.fixture
def log() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    stream = io.StringIO()
    name = "legato.test.observe"
    handler = configure_logging("debug", stream=stream, logger=name, static={"service": "test"})
    logger = logging.getLogger(name)
    logger.propagate = False
    yield logger, stream
    logger.removeHandler(handler)


def lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_records_are_json_lines_with_extras(log: tuple[logging.Logger, io.StringIO]) -> None:
    logger, stream = log
    logger.info("run %s finished", "r1", extra={"run_id": "r1", "cost": 0.5})
    (rec,) = lines(stream)
    assert rec["msg"] == "run r1 finished"
    assert rec["level"] == "info"
    assert rec["logger"] == "legato.test.observe"
    assert rec["run_id"] == "r1"
    assert rec["cost"] == 0.5
    assert rec["service"] == "test"
    assert "trace_id" not in rec


def test_secrets_are_redacted_from_message_extras_and_traceback(log: tuple[logging.Logger, io.StringIO]) -> None:
    logger, stream = log
    try:
        raise RuntimeError(f"upstream rejected key {SECRET}")
    except RuntimeError:
        logger.exception(
            "call failed with %s",
            SECRET,
            extra={"headers": {"Authorization": f"Bearer {SECRET}"}, "api_key": "plain", "note": SECRET},
        )
    text = stream.getvalue()
    assert SECRET not in text
    (rec,) = lines(stream)
    assert rec["msg"] == f"call failed with {REDACTED}"
    assert rec["headers"] == {"Authorization": REDACTED}
    assert rec["api_key"] == REDACTED
    assert "RuntimeError: upstream rejected key [REDACTED]" in str(rec["exc"])


def test_text_format_is_redacted_too() -> None:
    stream = io.StringIO()
    logger = logging.getLogger("legato.test.observe.text")
    logger.propagate = False
    handler = configure_logging("info", format="text", stream=stream, logger=logger.name, redactor=Redactor(["zz\\d+"]))
    try:
        logger.warning("token zz123 and %s", SECRET)
    finally:
        logger.removeHandler(handler)
    assert stream.getvalue().rstrip().endswith(f"token {REDACTED} and {REDACTED}")


def test_trace_ids_join_logs_to_spans(log: tuple[logging.Logger, io.StringIO]) -> None:
    logger, stream = log
    provider = TracerProvider()
    with provider.get_tracer("t").start_as_current_span("work") as span:
        logger.info("inside")
    (rec,) = lines(stream)
    assert rec["trace_id"] == format(span.get_span_context().trace_id, "032x")
    assert rec["span_id"] == format(span.get_span_context().span_id, "016x")


def test_reconfiguring_replaces_the_handler_and_bad_level_is_rejected() -> None:
    name = "legato.test.observe.twice"
    a, b = io.StringIO(), io.StringIO()
    configure_logging("info", stream=a, logger=name)
    h = configure_logging("info", stream=b, logger=name)
    logger = logging.getLogger(name)
    logger.propagate = False
    logger.info("once")
    logger.removeHandler(h)
    assert a.getvalue() == ""
    assert len(b.getvalue().splitlines()) == 1
    with pytest.raises(ValueError, match="unknown log level 'loud'"):
        configure_logging("loud", logger=name)


def test_extras_are_redacted_on_every_line_and_numbers_kept(log: tuple[logging.Logger, io.StringIO]) -> None:
    logger, stream = log
    for n in range(2):  # the formatter remembers which names are sensitive: the second line too
        logger.info("call", extra={"api_key": "plain", "path": f"/v1/{SECRET}", "tokens": n, "ok": True, "x": None})
    for n, rec in enumerate(lines(stream)):
        assert rec["api_key"] == REDACTED
        assert rec["path"] == f"/v1/{REDACTED}"
        assert (rec["tokens"], rec["ok"], rec["x"]) == (n, True, None)


def test_any_value_makes_a_line_of_valid_json(log: tuple[logging.Logger, io.StringIO]) -> None:
    """Values JSON has no native form for still make one valid line each: text in any
    script as itself, an integer past 64 bits, a float that is not a number, an object
    (by its repr), a mapping with non-string keys."""

    class Thing:
        def __repr__(self) -> str:
            return "<thing>"

    logger, stream = log
    logger.info("café ✓", extra={"big": 2**70, "nan": float("nan"), "thing": Thing(), "keys": {1: "one"}})
    logger.info("plain", extra={"nan": float("inf"), "n": 3})
    raw = stream.getvalue().splitlines()
    first, second = (json.loads(line, parse_constant=lambda c: pytest.fail(f"not JSON: {c}")) for line in raw)
    assert "café ✓" in raw[0]  # not escaped
    assert first["msg"] == "café ✓"
    assert first["big"] == 2**70
    assert first["thing"] == "<thing>"
    assert first["keys"] == {"1": "one"}
    assert second["nan"] is None
    assert second["n"] == 3
