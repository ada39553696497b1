"""Pipeline files: the guide's YAML format, checked key by key with line numbers.

```yaml
name: iris-training
trigger: {branch: main, paths: ["src/**", "data/**"]}
environment_variables: {MODEL_NAME: iris}
stages:
  - name: validate
    script: validate.py
    timeout_minutes: 0.5          # fractions allowed
  - name: train
    script: train.py
    dependencies: [validate]
    retry_count: 2
notifications:
  email: [ops@example.com]        # or a mapping: to, host, port, starttls, username, ...
  slack: https://hooks.slack.com/services/...
  webhook: https://ci.example/hooks/mlops
```

Our own keys: top-level ``concurrency``, ``max_parallel``, ``params``; per stage
``notebook``, ``parameters``, ``inputs``, ``cache``, ``retry_backoff_seconds``,
``retry_backoff_max_seconds``, ``retry_on``; under ``notifications`` ``on`` and, for
``webhook``, a mapping with ``url``, ``secret_env`` and ``slack``. ``${VAR}`` in a
notification value is read from the environment. Unknown keys are errors naming the key
and its line; YAML syntax errors give line and column.

A stage is skipped as cached only when it declares ``inputs`` (the files it reads) or
sets ``cache: true`` (its key is then its script, params, environment and upstream
outputs only); any other stage runs every time.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from ..errors import PipelineSpecError
from .notify import Email, Notifier, Webhook
from .pipeline import Pipeline
from .stage import Stage

TOP = {"name", "description", "trigger", "environment_variables", "stages", "notifications",
       "concurrency", "max_parallel", "params"}  # fmt: skip
STAGE = {"name", "script", "notebook", "environment", "dependencies", "timeout_minutes",
         "retry_count", "retry_backoff_seconds", "retry_backoff_max_seconds", "retry_on",
         "parameters", "inputs", "cache", "description"}  # fmt: skip
NOTIFY = {"email", "slack", "webhook", "on"}
EMAIL = {"to", "host", "port", "starttls", "username", "password_env", "sender"}
WEBHOOK = {"url", "secret_env", "slack"}
TRIGGER = {"branch", "paths"}


class _Doc:
    """A YAML mapping node with 1-based key lines, checked against allowed keys."""

    def __init__(self, node: yaml.Node, allowed: set[str], where: str, file: str) -> None:
        if not isinstance(node, yaml.MappingNode):
            raise PipelineSpecError(f"{file}:{node.start_mark.line + 1}: {where} must be a mapping",
                                    node.start_mark.line + 1)  # fmt: skip
        self.file, self.line = file, node.start_mark.line + 1
        self.nodes: dict[str, yaml.Node] = {}
        for k, v in node.value:
            name, line = str(k.value), k.start_mark.line + 1
            if name not in allowed:
                raise PipelineSpecError(
                    f"{file}:{line}: unknown key {name!r} in {where}; allowed: "
                    f"{', '.join(sorted(allowed))}",
                    line, k.start_mark.column + 1,
                )  # fmt: skip
            if name in self.nodes:
                raise PipelineSpecError(f"{file}:{line}: key {name!r} repeated in {where}", line)
            self.nodes[name] = v

    def value(self, key: str, default: Any = None) -> Any:
        node = self.nodes.get(key)
        return default if node is None else _construct(node)

    def line_of(self, key: str) -> int:
        node = self.nodes.get(key)
        return self.line if node is None else node.start_mark.line + 1


def _construct(node: yaml.Node) -> Any:
    loader = yaml.SafeLoader("")
    try:
        return loader.construct_object(node, deep=True)
    finally:
        loader.dispose()


def _env(value: Any) -> Any:
    return os.path.expandvars(value) if isinstance(value, str) else value


def _settings(doc: _Doc, key: str, allowed: set[str]) -> dict[str, Any] | None:
    """A notifier's settings: a mapping checked key by key (each on its own line), or None
    when ``key`` is absent or is not a mapping (a shorthand such as a list or a URL)."""
    node = doc.nodes.get(key)
    if not isinstance(node, yaml.MappingNode):
        return None
    sub = _Doc(node, allowed, f"notifications.{key}", doc.file)
    return {k: _env(sub.value(k)) for k in sub.nodes}


def _notifiers(doc: _Doc) -> list[Notifier]:
    on = doc.value("on", ["success", "failure"])
    out: list[Notifier] = []
    email_settings = _settings(doc, "email", EMAIL)
    hook_settings = _settings(doc, "webhook", WEBHOOK)
    try:
        email = doc.value("email")
        if email is not None:
            settings = email_settings if email_settings is not None else {"to": email}
            for k, var in (("host", "MLOPS_NB_SMTP_HOST"), ("port", "MLOPS_NB_SMTP_PORT")):
                if k not in settings and os.environ.get(var):
                    settings[k] = os.environ[var]
            if "port" in settings:
                settings["port"] = int(settings["port"])
            out.append(Email(on=tuple(on), **settings))
        slack = doc.value("slack")
        if slack is not None:
            out.append(Webhook(url=_env(slack), slack=True, on=tuple(on)))
        hook = doc.value("webhook")
        if hook_settings is not None:
            env = hook_settings.get("secret_env")
            secret = os.environ.get(env) if env else None
            out.append(Webhook(url=hook_settings.get("url", ""), slack=bool(hook_settings.get("slack")),
                               secret=secret, on=tuple(on)))  # fmt: skip
        elif hook is not None:
            out.append(Webhook(url=_env(hook), on=tuple(on)))
    except (ValueError, TypeError) as e:
        raise PipelineSpecError(f"{doc.file}:{doc.line}: notifications: {e}", doc.line) from e
    return out


def _trigger(top: _Doc) -> Any:
    """The trigger's value, its keys checked on their own lines when it is a mapping."""
    node = top.nodes.get("trigger")
    if isinstance(node, yaml.MappingNode):
        _Doc(node, TRIGGER, "trigger", top.file)
    return top.value("trigger")


def _stage(doc: _Doc) -> Stage:
    name = doc.value("name")
    if name is None:
        raise PipelineSpecError(f"{doc.file}:{doc.line}: a stage needs a 'name'", doc.line)
    try:
        return Stage(
            name=str(name), script=doc.value("script"), notebook=doc.value("notebook"),
            parameters=doc.value("parameters", {}), environment=doc.value("environment"),
            dependencies=doc.value("dependencies") or (),
            timeout_minutes=doc.value("timeout_minutes"),
            retry_count=doc.value("retry_count", 0),
            retry_backoff=doc.value("retry_backoff_seconds", 1.0),
            retry_backoff_max=doc.value("retry_backoff_max_seconds", 60.0),
            retry_on=doc.value("retry_on", ("error", "timeout")),
            inputs=doc.value("inputs") or (), cache=doc.value("cache"), line=doc.line,
        )  # fmt: skip
    except PipelineSpecError as e:
        raise PipelineSpecError(f"{doc.file}:{doc.line}: {e}", doc.line) from e


def loads(text: str, file: str = "<string>", base_dir: Path | None = None) -> Pipeline:
    """Build a pipeline from YAML text."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (None, None)
        raise PipelineSpecError(
            f"{file}:{line}:{col}: malformed YAML: {e.problem or e.context}", line, col
        ) from e
    if root is None:
        raise PipelineSpecError(f"{file}: the pipeline file is empty", 1)
    top = _Doc(root, TOP, "the pipeline", file)
    stages_node = top.nodes.get("stages")
    if not isinstance(stages_node, yaml.SequenceNode) or not stages_node.value:
        raise PipelineSpecError(f"{file}:{top.line_of('stages')}: 'stages' must be a non-empty list",
                                top.line_of("stages"))  # fmt: skip
    stages = [_stage(_Doc(n, STAGE, "a stage", file)) for n in stages_node.value]
    notify = top.nodes.get("notifications")
    notifiers = _notifiers(_Doc(notify, NOTIFY, "notifications", file)) if notify else []
    try:
        return Pipeline(
            stages=stages, name=str(top.value("name", "pipeline")), trigger=_trigger(top),
            environment_variables=top.value("environment_variables") or {},
            notifications=notifiers, concurrency=top.value("concurrency", "allow"),
            max_parallel=top.value("max_parallel", 4), params=top.value("params") or {},
            base_dir=base_dir, source=file,
        )  # fmt: skip
    except PipelineSpecError as e:
        if str(e).startswith(file):
            raise
        raise PipelineSpecError(f"{file}:{e.line or top.line}: {e}", e.line or top.line) from e


def load(path: str | Path) -> Pipeline:
    """Read a pipeline file; scripts are found relative to its folder."""
    file = Path(path)
    try:
        text = file.read_text()
    except FileNotFoundError as e:
        raise PipelineSpecError(f"pipeline file {str(file)!r} not found") from e
    return loads(text, str(file), file.resolve().parent)
