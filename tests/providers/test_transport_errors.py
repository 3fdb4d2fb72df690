"""Transport failures are translated once, straight to legato errors, whichever wire
raised them (aiohttp by default, httpx for HTTP/2 and injected transports)."""

from __future__ import annotations

import math

import aiohttp
import httpx
import pytest
from aiohttp.client_reqrep import ConnectionKey

from legato.errors import BadRequest, ConnectionFailed, ModelError, ProviderTimeout, StreamInterrupted
from legato.providers._errors import from_transport, transport_errors

_KEY = ConnectionKey("api.example", 443, True, True, None, None, None)


@pytest.mark.parametrize(
    ("exc", "streaming", "expected"),
    [
        (aiohttp.ConnectionTimeoutError("connect"), False, ProviderTimeout),
        (aiohttp.SocketTimeoutError("read"), True, ProviderTimeout),
        (aiohttp.ClientConnectorError(_KEY, OSError(111, "refused")), True, ConnectionFailed),
        (aiohttp.ServerDisconnectedError(), False, ConnectionFailed),
        (aiohttp.ServerDisconnectedError(), True, StreamInterrupted),
        (aiohttp.ClientPayloadError("cut"), True, StreamInterrupted),
        (aiohttp.ClientOSError(104, "reset"), True, StreamInterrupted),
        (aiohttp.ClientOSError(104, "reset"), False, ConnectionFailed),
        (aiohttp.NonHttpUrlClientError("ftp://x"), False, BadRequest),
        (aiohttp.InvalidURL("http://:bad"), False, ConnectionFailed),
        (aiohttp.ClientError("other"), False, ConnectionFailed),
        (httpx.ReadTimeout("slow"), False, ProviderTimeout),
        (httpx.RemoteProtocolError("cut"), True, StreamInterrupted),
        (httpx.ConnectError("refused"), False, ConnectionFailed),
        (httpx.UnsupportedProtocol("ftp"), False, BadRequest),
        (TimeoutError(), False, ProviderTimeout),
        (OSError("socket"), False, ConnectionFailed),
    ],
)
def test_each_failure_maps_straight_to_its_legato_error(
    exc: BaseException, streaming: bool, expected: type[ModelError]
) -> None:
    err = from_transport(exc, provider="openai", model="m", streaming=streaming)
    assert type(err) is expected
    assert (err.provider, err.model) == ("openai", "m")


def test_the_wires_failures_are_what_adapters_catch() -> None:
    caught = transport_errors()
    assert issubclass(aiohttp.ClientPayloadError, caught)
    assert issubclass(httpx.ReadError, caught)


def test_response_bodies_read_as_the_standard_library_reads_them() -> None:
    from legato.providers._http import _loads

    assert _loads(b'{"a":[1,2.5,"x"],"b":null}') == {"a": [1, 2.5, "x"], "b": None}
    assert _loads(b'{"text":"\\ud800"}') == {"text": "\ud800"}  # a lone surrogate escape is still read
    assert math.isnan(_loads(b'{"v":NaN}')["v"])
    assert _loads(b'{"n":123456789012345678901234567890}')["n"] == 123456789012345678901234567890
    with pytest.raises(ValueError):
        _loads(b'{"a": ')
