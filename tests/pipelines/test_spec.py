"""Pipeline files and declarations: the guide's format, and clear errors before any run."""

from __future__ import annotations

from pathlib import Path

import pytest

import mlops_nb as mnb
from mlops_nb.pipelines import spec
from mlops_nb.pipelines.notify import Email, Webhook

from .conftest import write

GUIDE = """\
name: model-training
trigger:
  branch: main
  paths: ["src/**", "data/**"]
environment_variables:
  MODEL_NAME: churn
  PYTHONHASHSEED: "0"
stages:
  - name: validate_data
    script: scripts/validate.py
    environment: python:3.11
    timeout_minutes: 0.5
  - name: train
    script: scripts/train.py
    environment: python:3.11
    dependencies: [validate_data]
    timeout_minutes: 30
    retry_count: 2
  - name: evaluate
    script: scripts/evaluate.py
    dependencies: [train]
notifications:
  email: [ml-team@example.com]
  slack: https://hooks.slack.example/services/T000
  webhook: https://ci.example/hooks/mlops
"""


@pytest.fixture
def guide(project: Path) -> Path:
    for name in ("validate", "train", "evaluate"):
        write(project, f"scripts/{name}.py", "print('ok')\n")
    return write(project, "pipeline.yaml", GUIDE)


def test_guide_format_loads_unchanged(guide: Path) -> None:
    p = mnb.Pipeline.from_yaml(guide)
    assert p.name == "model-training"
    assert [s.name for s in p.stages] == ["validate_data", "train", "evaluate"]
    train = p.dag.stages["train"]
    assert train.dependencies == ("validate_data",) and train.retry_count == 2
    assert train.image == "python:3.11" and train.timeout_seconds == 1800
    assert p.dag.stages["validate_data"].timeout_seconds == 30.0  # fractions of minutes
    assert p.environment_variables == {"MODEL_NAME": "churn", "PYTHONHASHSEED": "0"}
    assert p.trigger == mnb.pipelines.Trigger(("main",), ("src/**", "data/**"))
    kinds = sorted(
        type(n).__name__ + ("-slack" if getattr(n, "slack", False) else "") for n in p.notifications
    )
    assert kinds == ["Email", "Webhook", "Webhook-slack"]
    assert repr(p) == "<Pipeline model-training: validate_data -> train -> evaluate>"


def test_unknown_key_names_key_and_line(guide: Path) -> None:
    text = guide.read_text().replace("    retry_count: 2", "    retry_count: 2\n    retries: 3")
    guide.write_text(text)
    with pytest.raises(
        mnb.PipelineSpecError, match=r"pipeline.yaml:19: unknown key 'retries'"
    ) as e:
        mnb.Pipeline.from_yaml(guide)
    assert e.value.line == 19 and e.value.column == 5


def test_unknown_top_level_and_notification_keys(project: Path) -> None:
    write(project, "a.sh", "true\n")
    with pytest.raises(mnb.PipelineSpecError, match=r":2: unknown key 'stagse'"):
        spec.loads("name: x\nstagse: []\n", "p.yaml", project)
    text = "stages:\n  - {name: a, script: a.sh}\nnotifications:\n  pager: x\n"
    with pytest.raises(mnb.PipelineSpecError, match=r":4: unknown key 'pager' in notifications"):
        spec.loads(text, "p.yaml", project)


@pytest.mark.parametrize(
    ("block", "key", "where", "line", "column"),
    [
        ("trigger:\n  branch: main\n  pahts: [src/**]\n", "pahts", "trigger", 6, 3),
        ("notifications:\n  email:\n    to: [a@example.com]\n    hots: smtp\n", "hots",
         "notifications.email", 7, 5),
        ("notifications:\n  webhook:\n    url: http://127.0.0.1:9/\n    secret: x\n", "secret",
         "notifications.webhook", 7, 5),
    ],
)  # fmt: skip
def test_unknown_nested_keys_name_their_own_line(
    project: Path, block: str, key: str, where: str, line: int, column: int
) -> None:
    write(project, "a.sh", "true\n")
    text = "name: x\nstages:\n  - {name: a, script: a.sh}\n" + block
    with pytest.raises(
        mnb.PipelineSpecError, match=rf"^p.yaml:{line}: unknown key '{key}' in {where}; allowed: "
    ) as e:
        spec.loads(text, "p.yaml", project)
    assert (e.value.line, e.value.column) == (line, column)


def test_malformed_yaml_gives_line_and_column(project: Path) -> None:
    text = "name: x\nstages:\n  - name: a\n    script: [unclosed\n"
    with pytest.raises(mnb.PipelineSpecError, match=r"p.yaml:5:1: malformed YAML") as e:
        spec.loads(text, "p.yaml", project)
    assert (e.value.line, e.value.column) == (5, 1)
    bad_indent = "name: x\nstages:\n  - name: a\n   script: a.sh\n"
    with pytest.raises(mnb.PipelineSpecError, match=r"p.yaml:4:\d+: malformed YAML"):
        spec.loads(bad_indent, "p.yaml", project)


def test_missing_script_is_rejected_with_its_line(guide: Path) -> None:
    (guide.parent / "scripts" / "train.py").unlink()
    with pytest.raises(
        mnb.PipelineSpecError,
        match=r"stage 'train' \(line 13\): script 'scripts/train.py' not found",
    ):
        mnb.Pipeline.from_yaml(guide)


def test_cycles_and_unknown_dependencies_are_rejected() -> None:
    with pytest.raises(mnb.PipelineSpecError, match="cycle: "):
        mnb.Pipeline(stages=[
            mnb.Stage("a", script="true", dependencies=["c"]),
            mnb.Stage("b", script="true", dependencies=["a"]),
            mnb.Stage("c", script="true", dependencies=["b"]),
        ])  # fmt: skip
    with pytest.raises(mnb.PipelineSpecError, match="unknown stage 'trian'; known stages: a, b"):
        mnb.Pipeline(stages=[mnb.Stage("a", script="true"),
                             mnb.Stage("b", script="true", dependencies=["trian"])])  # fmt: skip
    with pytest.raises(mnb.PipelineSpecError, match="used twice"):
        mnb.Pipeline(stages=[mnb.Stage("a", script="true"), mnb.Stage("a", script="false")])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"script": "x.sh", "timeout_minutes": 0}, "timeout_minutes must be a positive number"),
        ({"script": "x.sh", "retry_count": -1}, "retry_count must be a non-negative integer"),
        ({"script": "x.sh", "retry_on": ["sometimes"]}, "retry_on entries"),
        ({}, "give exactly one of script=, notebook= or fn="),
        ({"script": "x.sh", "fn": print}, "give exactly one"),
        ({"notebook": "x.py"}, "notebook must be an .ipynb file"),
    ],
)
def test_stage_arguments_are_checked(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(mnb.PipelineSpecError, match=message):
        mnb.Stage("s", **kwargs)  # type: ignore[arg-type]


def test_notification_settings_from_yaml(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(project, "a.sh", "true\n")
    monkeypatch.setenv("HOOK_URL", "http://127.0.0.1:9/hook")
    monkeypatch.setenv("HOOK_SECRET", "a-long-secret")
    text = """\
stages: [{name: a, script: a.sh}]
notifications:
  on: [failure]
  email: {to: [a@example.com], host: 127.0.0.1, port: 2525, starttls: true}
  webhook: {url: "${HOOK_URL}", secret_env: HOOK_SECRET}
"""
    p = spec.loads(text, "p.yaml", project)
    email, hook = p.notifications
    assert (
        isinstance(email, Email)
        and email.port == 2525
        and email.starttls
        and email.on == ("failure",)
    )
    assert isinstance(hook, Webhook) and hook.url == "http://127.0.0.1:9/hook"
    assert hook.secret == "a-long-secret"
    assert not hook.wants(failed=False) and hook.wants(failed=True)


def test_empty_and_missing_files(project: Path) -> None:
    with pytest.raises(mnb.PipelineSpecError, match="empty"):
        spec.loads("", "p.yaml", project)
    with pytest.raises(mnb.PipelineSpecError, match="not found"):
        mnb.Pipeline.from_yaml(project / "nope.yaml")
    with pytest.raises(mnb.PipelineSpecError, match="'stages' must be a non-empty list"):
        spec.loads("name: x\n", "p.yaml", project)
