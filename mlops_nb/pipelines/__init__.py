"""Pipelines: declared stages run as real processes, recorded as they happen.

>>> import mlops_nb as mnb
>>> p = mnb.Pipeline(name="two", stages=[
...     mnb.Stage("a", script="echo a"),
...     mnb.Stage("b", script="echo b", dependencies=["a"]),
... ])
>>> ws = mnb.open(":memory:")
>>> run = p.run(workspace=ws, params={"data": "2026-11"}).wait()
>>> {name: s.status for name, s in run.status().stages.items()}
{'a': 'succeeded', 'b': 'succeeded'}
>>> ws.pipeline_runs()[["pipeline", "status", "stages", "done"]].to_dict("records")
[{'pipeline': 'two', 'status': 'succeeded', 'stages': 2, 'done': 2}]
"""

from .context import StageContext, StageOutputs, context, output
from .notify import Email, Message, Notifier, Slack, Webhook
from .pipeline import Pipeline
from .records import Attempt, RunStatus, StageStatus
from .run import Run
from .stage import Stage
from .trigger import Trigger

__all__ = [
    "Attempt",
    "Email",
    "Message",
    "Notifier",
    "Pipeline",
    "Run",
    "RunStatus",
    "Slack",
    "Stage",
    "StageContext",
    "StageOutputs",
    "StageStatus",
    "Trigger",
    "Webhook",
    "context",
    "output",
]
