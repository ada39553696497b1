"""Registry events: in-process callbacks and signed webhooks.

Callbacks run in the calling thread right after the operation commits; an exception in a
callback is logged and kept in :attr:`EventBus.callback_errors`, never raised into the
registry operation. Webhooks are delivered on a background thread: an HTTP POST of JSON,
signed with HMAC-SHA256 of the raw body under the webhook's secret and sent as
``X-Mlops-Signature: sha256=<hex>``. Each delivery is tried up to ``attempts`` times with
a timeout per try (retrying connection errors, 429 and 5xx), and its outcome is stored in
the workspace (``ws.webhook_deliveries()``; see :mod:`mlops_nb.deliveries` for when the
workspace cannot take the record). A receiver verifies a delivery with::

    expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    hmac.compare_digest(expected, request.headers["X-Mlops-Signature"])
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import httpx

from .artifacts import canonical_json
from .errors import InvalidArgument

if TYPE_CHECKING:
    pass

log = logging.getLogger("mlops_nb.events")

EVENTS = (
    "registered",
    "promoted",
    "archived",
    "promotion_refused",
    "approved",
    "alias_set",
    "alias_removed",
    "deployed",
    "rolled_back",
    "drift",
)


@dataclass(frozen=True)
class Event:
    """What happened, to which version, by whom."""

    name: str
    model: str | None
    version: int | None
    actor: str
    at: datetime
    data: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "event": self.name,
            "model": self.model,
            "version": self.version,
            "actor": self.actor,
            "at": self.at.isoformat(),
            "data": self.data,
        }


def check_event_name(name: str) -> None:
    if name not in EVENTS and name != "*":
        raise InvalidArgument(f"unknown event {name!r}; use one of: {', '.join(EVENTS)} or '*'")


def check_webhook_url(url: object) -> str:
    """A webhook URL with a scheme and a host.

    >>> check_webhook_url("http://")
    Traceback (most recent call last):
    ...
    mlops_nb.errors.InvalidArgument: webhook url 'http://' has no host; use e.g. 'https://hooks.example.com/mlops'
    """
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise InvalidArgument(f"webhook url must start with http:// or https://, got {url!r}")
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, ValueError) as e:
        raise InvalidArgument(f"webhook url {url!r} cannot be read: {e}") from e
    if not parsed.host or any(c.isspace() for c in url):
        raise InvalidArgument(
            f"webhook url {url!r} has no host; use e.g. 'https://hooks.example.com/mlops'"
        )
    return url


def sign(secret: str, body: bytes) -> str:
    """The ``X-Mlops-Signature`` header value for ``body``.

    >>> sign("s3cret", b'{"event":"promoted"}')[:15]
    'sha256=8fc12286'
    """
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class Delivery:
    """The outcome of one webhook delivery."""

    ok: bool
    attempts: int
    status_code: int | None
    error: str | None


def post_signed(
    url: str,
    secret: str,
    event: Event,
    *,
    attempts: int = 3,
    timeout: float = 5.0,
    backoff: float = 0.5,
) -> Delivery:
    """POST one event; never raises."""
    body = canonical_json(event.to_json())
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "mlops-nb",
        "X-Mlops-Event": event.name,
        "X-Mlops-Delivery": str(uuid.uuid4()),
        "X-Mlops-Signature": sign(secret, body),
    }
    status: int | None = None
    error: str | None = None
    for attempt in range(1, attempts + 1):
        try:
            response = httpx.post(url, content=body, headers=headers, timeout=timeout)
            status = response.status_code
            if response.is_success:
                return Delivery(True, attempt, status, None)
            error = f"HTTP {status}"
            if status < 500 and status != 429:
                return Delivery(False, attempt, status, error)
        except httpx.HTTPError as e:
            status, error = None, f"{type(e).__name__}: {e}"
        if attempt < attempts:
            time.sleep(backoff * 2 ** (attempt - 1))
    return Delivery(False, attempts, status, error)


Callback = Callable[[Event], Any]


class EventBus:
    """Callbacks of this process plus a small pool that delivers webhooks."""

    def __init__(self) -> None:
        self._callbacks: dict[str, list[Callback]] = {}
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None
        self._pending: set[Future[Any]] = set()
        self.callback_errors: list[tuple[Event, BaseException]] = []

    def on(self, name: str, fn: Callback) -> Callback:
        check_event_name(name)
        if not callable(fn):
            raise InvalidArgument(
                f"callback for {name!r} must be callable, got {type(fn).__name__}"
            )
        with self._lock:
            self._callbacks.setdefault(name, []).append(fn)
        return fn

    def off(self, name: str, fn: Callback) -> None:
        with self._lock:
            if fn in self._callbacks.get(name, []):
                self._callbacks[name].remove(fn)

    def run_callbacks(self, event: Event) -> None:
        with self._lock:
            fns = [*self._callbacks.get(event.name, []), *self._callbacks.get("*", [])]
        for fn in fns:
            try:
                fn(event)
            except Exception as e:
                log.exception("callback %r for event %r failed", fn, event.name)
                self.callback_errors.append((event, e))

    def submit(self, job: Callable[[], Any]) -> None:
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="mlops-nb-hook")
            future = self._pool.submit(job)
            self._pending.add(future)
        future.add_done_callback(self._pending.discard)

    def flush(self, timeout: float | None = 30.0) -> bool:
        """Wait for queued webhook deliveries; True when all finished in time."""
        with self._lock:
            pending = set(self._pending)
        if not pending:
            return True
        _done, not_done = wait(pending, timeout=timeout)
        return not not_done

    def close(self) -> None:
        self.flush()
        with self._lock:
            if self._pool is not None:
                self._pool.shutdown(wait=True)
                self._pool = None


def now() -> datetime:
    return datetime.now(UTC)
