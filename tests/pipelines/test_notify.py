"""Notifications received by real servers on 127.0.0.1: a webhook and SMTP (aiosmtpd)."""

from __future__ import annotations

import email
import json
import ssl
import subprocess
import sys
from collections.abc import Iterator
from email.message import Message as MailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller

import mlops_nb as mnb
from mlops_nb.pipelines.history import notifications

from ..conftest import Receiver, free_port, write_notebook
from .conftest import wait_for


class Mailbox:
    def __init__(self) -> None:
        self.messages: list[MailMessage] = []
        self.envelopes: list[Any] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.envelopes.append(envelope)
        self.messages.append(email.message_from_bytes(envelope.content))
        return "250 OK"


def _smtp(tls: ssl.SSLContext | None) -> Iterator[tuple[Mailbox, int]]:
    box = Mailbox()
    port = free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port, tls_context=tls,
                            require_starttls=tls is not None)  # fmt: skip
    controller.start()
    try:
        yield box, port
    finally:
        controller.stop()


@pytest.fixture
def smtp() -> Iterator[tuple[Mailbox, int]]:
    yield from _smtp(None)


@pytest.fixture
def smtp_tls(tmp_path: Path) -> Iterator[tuple[Mailbox, int]]:
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
                    "-out", str(cert), "-days", "1", "-subj", "/CN=127.0.0.1"],
                   check=True, capture_output=True, timeout=60)  # fmt: skip
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    yield from _smtp(context)


def _pipeline(
    project: Path, notifiers: list[mnb.pipelines.Notifier], fail: bool = False
) -> mnb.Pipeline:
    return mnb.Pipeline(name="alerts", base_dir=project, notifications=notifiers, stages=[
        mnb.Stage("train", script="echo training"),
        mnb.Stage("evaluate", script="exit 2" if fail else "echo fine", dependencies=["train"]),
    ])  # fmt: skip


def test_webhook_receives_the_signed_run_summary(
    ws: mnb.Workspace, project: Path, receiver: Receiver
) -> None:
    hook = mnb.Webhook(url=receiver.url, secret=receiver.secret)
    run = _pipeline(project, [hook], fail=True).run(workspace=ws).wait(240)
    assert receiver.bad_signatures == 0
    (got,) = receiver.received
    body = got["body"]
    assert body["event"] == "pipeline_finished" and body["run"]["run_id"] == run.id
    assert body["run"]["status"] == "failed"
    assert body["run"]["stages"]["evaluate"]["exit_code"] == 2
    sent = notifications(ws, run.id)
    assert sent["ok"].tolist() == [True] and sent["notifier"].tolist() == [repr(hook)]


def test_slack_payload_and_on_filter(ws: mnb.Workspace, project: Path) -> None:
    r = Receiver(None)  # Slack's incoming webhooks are not signed
    try:
        slack = mnb.pipelines.Slack(r.url.replace("/hook", "/slack"), on=["failure"])
        ok = _pipeline(project, [slack]).run(workspace=ws).wait(240)
        assert ok.status().status == "succeeded"
        failed = _pipeline(project, [slack], fail=True).run(workspace=ws).wait(240)
        assert r.hits == 1 and len(r.received) == 1
        assert notifications(ws, ok.id).empty and len(notifications(ws, failed.id)) == 1
    finally:
        r.close()
    got = r.received[0]
    assert got["headers"]["Content-Type"].startswith("application/json")
    assert "X-Mlops-Signature" not in got["headers"]
    body = got["body"]
    assert set(body) == {"text", "blocks"}
    assert body["text"].startswith("[mlops-nb] pipeline alerts failed")
    assert body["blocks"][0]["type"] == "header"
    assert "evaluate  failed" in body["blocks"][1]["text"]["text"]
    assert "exit code 2" in body["blocks"][1]["text"]["text"]


def test_email_with_html_summary_and_chart(ws: mnb.Workspace, project: Path,
                                           smtp: tuple[Mailbox, int]) -> None:  # fmt: skip
    box, port = smtp
    mail = mnb.Email(to=["ops@example.com", "ml@example.com"], host="127.0.0.1", port=port)
    run = _pipeline(project, [mail], fail=True).run(workspace=ws).wait(240)
    (msg,) = box.messages
    assert msg["Subject"] == f"[mlops-nb] pipeline alerts failed ({run.id})"
    assert sorted(box.envelopes[0].rcpt_tos) == ["ml@example.com", "ops@example.com"]
    parts = {p.get_content_type(): p for p in msg.walk()}
    assert "evaluate  failed  1 attempt" in parts["text/plain"].get_payload(decode=True).decode()
    html = parts["text/html"].get_payload(decode=True).decode()
    assert 'class="mnb-durations"' in html and 'data-status="failed"' in html
    attachment = next(p for p in msg.walk() if p.get_filename() == "summary.html")
    assert run.id in attachment.get_payload(decode=True).decode()


def test_email_over_starttls(
    ws: mnb.Workspace, project: Path, smtp_tls: tuple[Mailbox, int]
) -> None:
    box, port = smtp_tls
    plain = mnb.Email(to=["ops@example.com"], host="127.0.0.1", port=port)
    tls = mnb.Email(to=["ops@example.com"], host="127.0.0.1", port=port, starttls=True)
    run = _pipeline(project, [plain, tls]).run(workspace=ws).wait(240)
    sent = notifications(ws, run.id)
    # The server requires STARTTLS: the plain notifier fails and is recorded, the run is fine.
    assert sent["ok"].tolist() == [False, True]
    assert "STARTTLS" in str(sent["error"].iloc[0]) or "530" in str(sent["error"].iloc[0])
    assert run.status().status == "succeeded" and len(box.messages) == 1


def test_a_failing_notifier_never_fails_the_run(ws: mnb.Workspace, project: Path) -> None:
    dead = mnb.Webhook(url=f"http://127.0.0.1:{free_port()}/hook", timeout=5)
    run = _pipeline(project, [dead]).run(workspace=ws).wait(240)
    assert run.status().status == "succeeded"
    (row,) = notifications(ws, run.id).to_dict("records")
    assert row["ok"] is False and "ConnectError" in row["error"]


def test_notebook_stage_is_attached_to_the_email(ws: mnb.Workspace, project: Path,
                                                 smtp: tuple[Mailbox, int]) -> None:  # fmt: skip
    import nbformat

    write_notebook(
        project / "score.ipynb",
        "from mlops_nb.pipelines import output\nprint('scoring', data, threshold)\n"
        "output('scored', data)",
        parameters="data = 'default'\nthreshold = 0.5",
    )
    box, port = smtp
    p = mnb.Pipeline(name="nb", base_dir=project, stages=[
        mnb.Stage("score", notebook="score.ipynb", parameters={"threshold": 0.9}, timeout_minutes=4),
    ], notifications=[mnb.Email(to=["ops@example.com"], host="127.0.0.1", port=port)])  # fmt: skip
    run = p.run(workspace=ws, params={"data": "2026-11"}).wait(280)
    assert run.status().status == "succeeded", run.logs("score")
    assert run.status().stages["score"].outputs == {"scored": "2026-11"}
    executed = nbformat.read(Path(run.status().run_dir) / "score" / "score.ipynb", as_version=4)
    injected = [c for c in executed.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert 'data = "2026-11"' in injected[0].source and "threshold = 0.9" in injected[0].source
    assert "scoring 2026-11 0.9" in json.dumps(executed.cells[-1].outputs)
    wait_for(lambda: box.messages)
    names = [p.get_filename() for p in box.messages[0].walk() if p.get_filename()]
    assert names == ["score-score.ipynb"]


def test_registry_events_use_the_same_notifiers(ws: mnb.Workspace, receiver: Receiver) -> None:
    from sklearn.linear_model import LogisticRegression

    hook = mnb.Webhook(url=receiver.url, secret=receiver.secret)
    subscription = ws.notify(hook, events=["promoted", "drift"])
    # A cell run twice subscribes once: every event would be sent twice otherwise.
    assert ws.notify(mnb.Webhook(url=receiver.url, secret=receiver.secret),
                     events=["promoted", "drift"]) == subscription  # fmt: skip
    assert ws.notifiers()[["id", "events"]].to_dict("records") == [
        {"id": subscription, "events": ["promoted", "drift"]}
    ]
    v = ws.model("iris").register(LogisticRegression().fit([[0.0], [1.0]], [0, 1]))
    v.promote("staging")
    wait_for(lambda: receiver.received)
    assert [r["body"]["event"] for r in receiver.received] == ["promoted"]
    assert receiver.received[0]["body"]["model"] == "iris"
    # Another process that opens the workspace sends to the same subscription.
    subprocess.run(
        [sys.executable, "-c", "import mlops_nb as mnb, sys; "
         "mnb.open(sys.argv[1]).model('iris').version(1).promote('production')", ws.path],
        check=True, timeout=120,
    )  # fmt: skip
    wait_for(lambda: len(receiver.received) == 2)
    assert receiver.received[1]["body"]["data"]["to"] == "production"
    ws.remove_notifier(subscription)
    v.promote("staging", reason="back")
    assert ws.notifiers().empty and len(receiver.received) == 2
    with pytest.raises(mnb.InvalidArgument, match="unknown event"):
        ws.notify(hook, events=["promotd"])
    with pytest.raises(mnb.InvalidArgument, match="no notifier subscription 99"):
        ws.remove_notifier(99)
    assert [a for a in ws.audit()["action"] if "notifier" in a] == [
        "notifier_added", "notifier_removed",
    ]  # fmt: skip


def test_a_drifted_report_reaches_the_notifier(ws: mnb.Workspace, receiver: Receiver) -> None:
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(0)
    reference = pd.DataFrame({"x": rng.normal(0, 1, 500), "z": rng.normal(0, 1, 500)})
    v = ws.model("m").register(
        lambda frame: frame["x"] > 0, flavor="python", reference_data=reference
    )
    shifted = pd.DataFrame({"x": rng.normal(3, 1, 500), "z": rng.normal(3, 1, 500)})
    ws.monitor("m").log(shifted, (shifted["x"] > 0).astype(int), version=v.number)
    ws.notify(mnb.Webhook(url=receiver.url, secret=receiver.secret), events=["drift"])
    report = ws.monitor("m").drift(reference="training", current="last 24h")
    assert report.drifted
    wait_for(lambda: receiver.received)  # sent on the workspace's delivery threads
    (got,) = receiver.received
    assert got["body"]["event"] == "drift" and got["body"]["model"] == "m"
    assert got["body"]["data"]["share_drifted"] == report.share_drifted
