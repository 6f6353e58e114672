"""A few blocking JSON calls over HTTP (standard library only): probes and the demo."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

from infra.local.service import LOCAL_HTTP


@dataclass(frozen=True)
class Answer:
    status: int
    body: Any  # decoded JSON, or the text when it is not JSON


def call(
    method: str,
    url: str,
    payload: Any = None,
    token: str | None = None,
    timeout: float = 10.0,
) -> Answer:
    """One request; HTTP errors are answers too, connection failures raise OSError."""
    data = None if payload is None else json.dumps(payload).encode()
    request = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with LOCAL_HTTP.open(request, timeout=timeout) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    text = raw.decode(errors="replace")
    try:
        return Answer(status, json.loads(text))
    except ValueError:
        return Answer(status, text)
