"""The pipeline engine: graph compile, scheduler, events.

The engine knows nothing of providers, the store or the server: steps are plain
(async or sync) functions; everything else observes a run through its events.
"""

from legato.engine._analysis import PlanSummary, summarize
from legato.engine._bus import EventBus, Subscriber
from legato.engine._calls import cache_key
from legato.engine._context import SKIPPED, RunControl, StepContext, current_step
from legato.engine._events import (
    Event,
    MapItemFinished,
    ModelCalled,
    RunFinished,
    RunStarted,
    RunStatus,
    StepFailed,
    StepFinished,
    StepProgress,
    StepRetried,
    StepSkipped,
    StepStarted,
    StepStatus,
    StepWaiting,
)
from legato.engine._executor import (
    Executor,
    StepCache,
    StepCall,
    executor_names,
    register_executor,
    resolve_executor,
    run_in_process,
)
from legato.engine._flow import Cycle, CycleLimitReached, Switch, SwitchNoMatch
from legato.engine._journal import StepJournal, captured_model_calls, journal_key, model_call_sink, step_journal
from legato.engine._pipeline import FailurePolicy, Pipeline
from legato.engine._plan import Plan
from legato.engine._resources import RunResources, run_resources
from legato.engine._result import MapItemError, RunResult, StepTiming
from legato.engine._step import InputDecl, LoopOptions, StepDef
from legato.engine._tokens import StepToken, TokenSink, stream_tokens, token_sink
from legato.engine._wait import InputRequest, WaitForInput, WaitKind, answer_problem, wait_for

__all__ = [
    "SKIPPED",
    "Cycle",
    "CycleLimitReached",
    "Event",
    "EventBus",
    "Executor",
    "FailurePolicy",
    "InputDecl",
    "InputRequest",
    "LoopOptions",
    "MapItemError",
    "MapItemFinished",
    "ModelCalled",
    "Pipeline",
    "Plan",
    "PlanSummary",
    "RunControl",
    "RunFinished",
    "RunResources",
    "RunResult",
    "RunStarted",
    "RunStatus",
    "StepCache",
    "StepCall",
    "StepContext",
    "StepDef",
    "StepFailed",
    "StepFinished",
    "StepJournal",
    "StepProgress",
    "StepRetried",
    "StepSkipped",
    "StepStarted",
    "StepStatus",
    "StepTiming",
    "StepToken",
    "StepWaiting",
    "Subscriber",
    "Switch",
    "SwitchNoMatch",
    "TokenSink",
    "WaitForInput",
    "WaitKind",
    "answer_problem",
    "cache_key",
    "captured_model_calls",
    "current_step",
    "executor_names",
    "journal_key",
    "model_call_sink",
    "register_executor",
    "resolve_executor",
    "run_in_process",
    "run_resources",
    "step_journal",
    "stream_tokens",
    "summarize",
    "token_sink",
    "wait_for",
]
