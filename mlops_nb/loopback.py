"""HTTP clients for this machine's own servers: routers, replicas, emulated pods.

Their addresses are 127.0.0.1, so proxy settings from the environment (``HTTP_PROXY``,
``ALL_PROXY`` without ``127.0.0.1`` in ``NO_PROXY``) must not apply: followed, they would
send a workspace's calls to its own routers through a proxy that cannot reach them.

    >>> from mlops_nb import loopback
    >>> with loopback.client(timeout=5.0) as http:
    ...     http.trust_env
    False
"""

from __future__ import annotations

import os

import httpx

_SHARED: dict[int, httpx.Client] = {}  # by process id: a forked child makes its own


def client(timeout: float = 10.0, *, keepalive: bool = True) -> httpx.Client:
    """A new client that ignores proxy settings; the caller closes it.

    ``keepalive=False`` opens a connection per request, for servers that may restart
    between calls (a kept connection to the old process would fail the next call).
    """
    limits = httpx.Limits() if keepalive else httpx.Limits(max_keepalive_connections=0)
    return httpx.Client(timeout=timeout, trust_env=False, limits=limits)


def shared() -> httpx.Client:
    """This process's client for calls that come often: one, never closed, no keep-alive.

    One client rather than one per call: every new client builds a TLS context from the CA
    bundle (about 35 ms of CPU) even for plain http, and ``deploy()`` polls its router
    every few tens of milliseconds while the replicas import their libraries on the same
    cores. Pass a timeout per request.
    """
    pid = os.getpid()
    if pid not in _SHARED:
        _SHARED[pid] = client(keepalive=False)
    return _SHARED[pid]
