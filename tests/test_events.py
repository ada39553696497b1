"""Callbacks and signed webhooks, delivered to a real receiver on 127.0.0.1."""

from __future__ import annotations

import logging
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

import mlops_nb as mnb
from tests.conftest import Receiver, free_port


def test_webhook_is_signed_and_recorded(ws: mnb.Workspace, receiver: Receiver) -> None:
    hook = ws.add_webhook(receiver.url, secret=receiver.secret, events=["promoted"])
    v = ws.model("churn").register({"v": 1})
    v.promote("staging", reason="eval ok")
    assert ws.flush(timeout=30)
    assert receiver.bad_signatures == 0
    assert len(receiver.received) == 1  # "registered" was not subscribed
    got = receiver.received[0]
    assert got["headers"]["X-Mlops-Event"] == "promoted"
    assert got["body"]["model"] == "churn" and got["body"]["version"] == 1
    assert got["body"]["data"] == {"from": "development", "to": "staging", "reason": "eval ok"}
    assert got["body"]["actor"] == "tester"
    deliveries = ws.webhook_deliveries()
    assert deliveries[["webhook_id", "event", "ok", "attempts", "status_code"]].to_dict(
        "records"
    ) == [{"webhook_id": hook, "event": "promoted", "ok": True, "attempts": 1, "status_code": 200}]


def test_wrong_secret_fails_verification(ws: mnb.Workspace, receiver: Receiver) -> None:
    ws.add_webhook(receiver.url, secret="not-the-secret", events=["registered"])
    ws.model("churn").register({"v": 1})
    assert ws.flush(timeout=30)
    assert receiver.bad_signatures == 1 and receiver.received == []
    row = ws.webhook_deliveries().iloc[0]
    assert (bool(row["ok"]), row["status_code"], row["attempts"]) == (False, 401, 1)


def test_failing_webhook_is_retried_then_recorded(ws: mnb.Workspace) -> None:
    flaky = Receiver("a-long-secret", statuses=[500, 503])
    try:
        ws.add_webhook(flaky.url, secret=flaky.secret, events=["registered"])
        ws.model("churn").register({"v": 1})
        assert ws.flush(timeout=30)
        assert flaky.hits == 3 and len(flaky.received) == 1
        assert ws.webhook_deliveries()["attempts"].tolist() == [3]
    finally:
        flaky.close()
    always = Receiver("a-long-secret", statuses=[500] * 10)
    try:
        ws.add_webhook(always.url, secret=always.secret, events=["promoted"])
        ws.model("churn").version(1).promote("staging")
        assert ws.flush(timeout=30)
        last = ws.webhook_deliveries().iloc[-1]
        assert (bool(last["ok"]), last["attempts"], last["error"]) == (False, 3, "HTTP 500")
    finally:
        always.close()
    assert ws.model("churn").version(1).stage == "staging"


def test_dead_webhook_never_blocks_the_operation(ws: mnb.Workspace) -> None:
    ws.add_webhook(f"http://127.0.0.1:{free_port()}/gone", secret="a-long-secret")
    start = time.monotonic()
    v = ws.model("churn").register({"v": 1})
    v.promote("staging")
    elapsed = time.monotonic() - start
    assert ws.flush(timeout=60)
    frame = ws.webhook_deliveries()
    assert frame["ok"].tolist() == [False, False]
    assert frame["error"].str.contains("ConnectError").all()
    assert v.refresh().stage == "staging"
    # Delivery runs off the calling thread: three failed tries with backoff take
    # at least 1.5 s, the registry operations themselves far less.
    assert elapsed < 1.5


def test_callbacks_and_failing_callbacks(
    ws: mnb.Workspace, caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[tuple[str, int | None]] = []

    def boom(event: mnb.Event) -> None:
        raise RuntimeError("callback bug")

    ws.on("registered", lambda e: seen.append((e.name, e.version)))
    ws.on("registered", boom)
    ws.on("alias_set", lambda e: seen.append((e.name, e.version)))
    ws.model("churn").register({"v": 1})
    ws.model("churn").set_alias("champion", 1)
    assert seen == [("registered", 1), ("alias_set", 1)]
    assert len(ws.events.callback_errors) == 1
    assert "callback bug" in caplog.text
    assert ws.model("churn").versions()["version"].tolist() == [1]
    ws.off("registered", boom)
    ws.model("churn").register({"v": 2})
    assert len(ws.events.callback_errors) == 1
    with pytest.raises(mnb.InvalidArgument, match="unknown event"):
        ws.on("promotd", print)


def test_webhook_arguments_are_checked(ws: mnb.Workspace) -> None:
    with pytest.raises(mnb.InvalidArgument, match="http"):
        ws.add_webhook("ftp://x", secret="a-long-secret")
    with pytest.raises(mnb.InvalidArgument, match="8 characters"):
        ws.add_webhook("http://127.0.0.1:1/x", secret="short")
    with pytest.raises(mnb.InvalidArgument, match="unknown event"):
        ws.add_webhook("http://127.0.0.1:1/x", secret="a-long-secret", events=["nope"])
    hook = ws.add_webhook("http://127.0.0.1:1/x", secret="a-long-secret")
    ws.remove_webhook(hook)
    assert ws.webhooks().empty
    with pytest.raises(mnb.InvalidArgument, match="no webhook"):
        ws.remove_webhook(hook)


def test_delivery_that_cannot_be_recorded_is_kept_and_recorded_later(
    tmp_path: Path, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "hooks.duckdb"
    ws = mnb.open(path, linger=0, busy_timeout=0.3)
    ws.add_webhook(receiver.url, secret=receiver.secret, events=["registered"])
    ws.model("m").register({"v": 1})
    assert ws.flush(timeout=30)
    # Another process takes the file, so the next record finds it busy past the timeout.
    holder = subprocess.Popen(
        [sys.executable, "-c", f"import duckdb, sys\ncon = duckdb.connect({str(path)!r})\n"
         "print('held', flush=True)\nsys.stdin.readline()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        event = mnb.Event("registered", "m", 2, "tester", datetime.now(UTC), {})
        hook_id = 1  # the webhook added above
        with caplog.at_level(logging.ERROR, logger="mlops_nb.events"):
            ws._deliver(hook_id, receiver.url, receiver.secret, event)
        assert "could not record webhook delivery" in caplog.text
    finally:
        assert holder.stdin is not None
        holder.stdin.write("\n")
        holder.stdin.close()
        holder.wait(timeout=30)
        assert holder.stdout is not None
        holder.stdout.close()
    pending = Path(f"{path}.deliveries-pending.jsonl")
    assert len(pending.read_text().splitlines()) == 1
    ws.model("m").register({"v": 3})  # its delivery records the kept one too
    assert ws.flush(timeout=30)
    deliveries = ws.webhook_deliveries()
    assert len(deliveries) == 3 and deliveries["ok"].all()
    assert not pending.exists()
    assert len(receiver.received) == 3
    ws.close()
