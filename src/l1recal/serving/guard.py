"""ASGI middleware that screens requests before BentoML parses them.

For the prediction routes (``/predict/...``) and ``/models`` it rejects:

* a body of another media type than ``application/json`` (415). BentoML would
  otherwise parse ``multipart/form-data`` and form bodies too;
* a body larger than the limit derived from the maximum batch size (413);
* a request for a kind without a loaded model (503, naming the kind).

Every rejection returns ``{"error": message}`` and logged; after the
first ten, only every hundredth is logged, with the running count.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, ClassVar

from l1recal.serving import KINDS

logger = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

#: Body bytes allowed per object, enough for one pretty-printed record.
BYTES_PER_OBJECT = 256
#: Body bytes allowed on top of the objects.
BASE_BODY_BYTES = 64 * 1024
_LOG_FIRST = 10
_LOG_EVERY = 100


def should_log_rejection(count: int) -> bool:
    """Return True for the first ten rejections and every hundredth after them."""
    return count <= _LOG_FIRST or count % _LOG_EVERY == 0


class RequestGuard:
    """Reject non-JSON, oversized and unserviceable requests with a 4xx or 503 JSON response.

    Attributes:
        loaded_kinds: kinds whose model the service instance of this process
            loaded; None until it has started, when no request is rejected as
            unserviceable.
    """

    loaded_kinds: ClassVar[frozenset[str] | None] = None
    rejections: ClassVar[int] = 0

    def __init__(
        self, app: Callable[..., Awaitable[None]], max_body_bytes: int
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    @staticmethod
    def body_limit(max_batch_size: int) -> int:
        """Return the largest request body in bytes accepted for ``max_batch_size`` objects."""
        return BASE_BODY_BYTES + BYTES_PER_OBJECT * max_batch_size

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or not (
            path.startswith("/predict/") or path == "/models"
        ):
            await self.app(scope, receive, send)
            return

        headers = {key.lower(): value for key, value in scope.get("headers", [])}
        media_type = (
            headers.get(b"content-type", b"application/json")
            .split(b";")[0]
            .strip()
            .lower()
        )
        if media_type != b"application/json":
            await self._reject(
                send,
                415,
                f"unsupported media type {media_type.decode('latin-1')!r}; "
                "send the request body as application/json",
                path,
            )
            return

        kind = path.split("/")[2] if path.startswith("/predict/") else None
        loaded = RequestGuard.loaded_kinds
        if kind in KINDS and loaded is not None and kind not in loaded:
            await self._reject(
                send,
                503,
                f"no approved {kind} model is loaded; package one with "
                "'l1recal package' and restart the service",
                path,
            )
            return

        body = await self._read_body(receive)
        if body is None:
            await self._reject(
                send,
                413,
                f"request body exceeds {self.max_body_bytes} bytes; split the batch "
                "into smaller requests",
                path,
            )
            return
        await self.app(scope, _replay(body, receive), send)

    async def _read_body(self, receive: Receive) -> bytes | None:
        """Read the whole body, or return None as soon as it exceeds the limit."""
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)

    @classmethod
    def count_rejection(cls) -> int:
        """Count one rejected request (here or in BentoML's validation); returns the running total."""
        cls.rejections += 1
        return cls.rejections

    async def _reject(self, send: Send, status: int, message: str, path: str) -> None:
        count = RequestGuard.count_rejection()
        if should_log_rejection(count):
            logger.warning(
                "request rejected: path=%s status=%d error=%s rejections=%d",
                path,
                status,
                message,
                count,
            )
        payload = json.dumps({"error": message}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(payload)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": payload})


def _replay(body: bytes, receive: Receive) -> Receive:
    """Return a receive callable that yields ``body`` once, then defers to ``receive``."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
