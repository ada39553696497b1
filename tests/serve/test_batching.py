"""Adaptive micro-batching under concurrent load, seen from the client and from /metrics.

The doubler model sleeps 5 ms a call and reports how many rows each call saw, so queued
requests must share predicts; every answer must still be its own request's.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import numpy as np
import pytest

from .conftest import Fleet, Server, buckets

CONCURRENCY = 64


def request(xs: list[float]) -> dict[str, Any]:
    return {"inputs": [{"name": "x", "shape": [len(xs)], "datatype": "FP64", "data": xs}]}


async def _fire(url: str, bodies: list[dict[str, Any]]) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=len(bodies), max_keepalive_connections=len(bodies))
    async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as client:
        return list(
            await asyncio.gather(*(client.post("/v2/models/doubler/infer", json=b) for b in bodies))
        )


def fire(server: Server, bodies: list[dict[str, Any]]) -> list[httpx.Response]:
    """All requests at once, each on its own connection."""
    return asyncio.run(_fire(server.url, bodies))


def answers(r: httpx.Response, rows: int) -> tuple[list[float], list[float]]:
    """(predictions, rows the model saw in the call that produced them)."""
    assert r.status_code == 200, r.text
    (predict,) = r.json()["outputs"]
    assert predict["shape"] == [rows, 2] and predict["datatype"] == "FP64"
    data = np.asarray(predict["data"]).reshape(rows, 2)
    return data[:, 0].tolist(), data[:, 1].tolist()


def batch_delta(server: Server, before: dict[float, float]) -> dict[float, float]:
    after = buckets(server.metrics(), "mlops_batch_size")
    return {le: after[le] - before.get(le, 0.0) for le in after}


def test_concurrent_requests_share_predicts_and_get_their_own_answers(fleet: Fleet) -> None:
    server = fleet.doubler
    before = buckets(server.metrics(), "mlops_batch_size")
    xs = [[1000.0 + i] for i in range(CONCURRENCY)]
    responses = fire(server, [request(x) for x in xs])
    seen = []
    for x, r in zip(xs, responses, strict=True):
        predictions, rows_seen = answers(r, 1)
        assert predictions == [2 * x[0]]
        seen.append(rows_seen[0])
    assert max(seen) > 1, "the model never saw more than one request per call"
    delta = batch_delta(server, before)
    predicts = delta[float("inf")]
    assert delta[1.0] < predicts, f"no batch of more than one row: {delta}"
    assert predicts < CONCURRENCY
    # A call that saw s one-row requests answered s of them: the calls the model saw are
    # the batches /metrics counted.
    assert sum(1 / s for s in seen) == pytest.approx(predicts)


def test_batch_rows_add_up_to_the_requests(fleet: Fleet) -> None:
    server = fleet.doubler
    families = server.metrics()
    rows_before = sum(
        s.value for s in families["mlops_batch_size"].samples if s.name == "mlops_batch_size_sum"
    )
    responses = fire(server, [request([float(i)]) for i in range(CONCURRENCY)])
    assert all(r.status_code == 200 for r in responses)
    rows_after = sum(
        s.value
        for s in server.metrics()["mlops_batch_size"].samples
        if s.name == "mlops_batch_size_sum"
    )
    assert rows_after - rows_before == CONCURRENCY


def test_mixed_sizes_and_failures_are_not_mixed_up(fleet: Fleet) -> None:
    """Multi-row requests are sliced back correctly; a request that makes the model raise,
    or answer short, fails alone (the batch is retried request by request)."""
    server = fleet.doubler
    bodies, expected = [], []
    for i in range(CONCURRENCY):
        rows = 1 + i % 4
        xs = [100.0 * i + j for j in range(rows)]
        if i % 16 == 5:
            xs[-1] = -1.0  # the model raises on this request only
        if i % 16 == 11:
            xs[0] = 999.0  # the model leaves this row out, which would shift the others
        bodies.append(request(xs))
        expected.append(xs)
    responses = fire(server, bodies)
    for xs, r in zip(expected, responses, strict=True):
        if min(xs) < 0:
            assert r.status_code == 500, r.text
            assert "x must not be negative" in r.json()["error"]
            continue
        if 999.0 in xs:
            assert r.status_code == 500, r.text
            assert f"for {len(xs)} rows" in r.json()["error"]
            continue
        predictions, rows_seen = answers(r, len(xs))
        assert predictions == [2 * x for x in xs]
        assert len(set(rows_seen)) == 1 and rows_seen[0] >= len(xs)
    assert server.client.get("/v2/health/ready").status_code == 200


def test_without_batching_every_predict_has_one_request(fleet: Fleet) -> None:
    server = fleet.doubler_unbatched
    before = buckets(server.metrics(), "mlops_batch_size")
    xs = [[7.0 + i] for i in range(CONCURRENCY)]
    responses = fire(server, [request(x) for x in xs])
    for x, r in zip(xs, responses, strict=True):
        assert answers(r, 1) == ([2 * x[0]], [1.0])
    delta = batch_delta(server, before)
    assert delta[1.0] == delta[float("inf")] == CONCURRENCY
