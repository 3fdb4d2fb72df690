"""legato: production AI orchestration.

Pipelines whose independent steps run in parallel, one model interface over every
provider, resilient routing, caching and batching, durable runs and an
OpenAI-compatible gateway.

The public API is re-exported here lazily: ``import legato`` stays cheap, and a
name's module is imported the first time the name is used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from legato._version import __version__

# name -> module that defines it. Each package adds its public names here.
_EXPORTS: dict[str, str] = {
    # engine
    "Pipeline": "legato.engine",
    "RunResult": "legato.engine",
    "RunStatus": "legato.engine",
    "StepStatus": "legato.engine",
    "StepContext": "legato.engine",
    "RunControl": "legato.engine",
    "SKIPPED": "legato.engine",
    "current_step": "legato.engine",
    "load_pipeline": "legato.spec",
    "loads_pipeline": "legato.spec",
    # model layer
    "ChatRequest": "legato.providers",
    "ChatResponse": "legato.providers",
    "ChatChunk": "legato.providers",
    "EmbedRequest": "legato.providers",
    "EmbedResponse": "legato.providers",
    "Message": "legato.providers",
    "Model": "legato.providers",
    "Usage": "legato.providers",
    "Tool": "legato.providers",
    "ToolCall": "legato.providers",
    "PythonModel": "legato.providers",
    "OpenAIModel": "legato.providers",
    "AnthropicModel": "legato.providers",
    "FakeProvider": "legato.testing",
    # caching, batching, cost
    "ResponseCache": "legato.cache",
    "SemanticCache": "legato.cache",
    "StepMemo": "legato.cache",
    "Batcher": "legato.batching",
    "Budget": "legato.cost",
    "BudgetGuard": "legato.cost",
    "CostEstimator": "legato.cost",
    # routing and resilience
    "Router": "legato.routing",
    "Deployment": "legato.routing",
    "Fallbacks": "legato.routing",
    "Cascade": "legato.routing",
    "Selector": "legato.routing",
    "Retry": "legato.resilience",
    "RetryBudget": "legato.resilience",
    "CircuitBreaker": "legato.resilience",
    "RateLimiter": "legato.resilience",
    "Bulkhead": "legato.resilience",
    "Timeout": "legato.resilience",
    "Hedge": "legato.resilience",
    # durable runs and the journal
    "RunStore": "legato.store",
    "DurableRunner": "legato.store",
    "Journal": "legato.store",
    "run_durably": "legato.store",
    # gateway
    "create_app": "legato.server",
    "ServerSettings": "legato.server",
    # observability
    "Instrumented": "legato.observe",
    "Metrics": "legato.observe",
    "Redactor": "legato.observe",
    # shared
    "RetryPolicy": "legato.retry",
    "LegatoConfig": "legato.config",
}

__all__ = ["__version__", *_EXPORTS]

if TYPE_CHECKING:
    from legato.batching import Batcher as Batcher
    from legato.cache import ResponseCache as ResponseCache
    from legato.cache import SemanticCache as SemanticCache
    from legato.cache import StepMemo as StepMemo
    from legato.config import LegatoConfig as LegatoConfig
    from legato.cost import Budget as Budget
    from legato.cost import BudgetGuard as BudgetGuard
    from legato.cost import CostEstimator as CostEstimator
    from legato.engine import SKIPPED as SKIPPED
    from legato.engine import Pipeline as Pipeline
    from legato.engine import RunControl as RunControl
    from legato.engine import RunResult as RunResult
    from legato.engine import RunStatus as RunStatus
    from legato.engine import StepContext as StepContext
    from legato.engine import StepStatus as StepStatus
    from legato.engine import current_step as current_step
    from legato.observe import Instrumented as Instrumented
    from legato.observe import Metrics as Metrics
    from legato.observe import Redactor as Redactor
    from legato.providers import AnthropicModel as AnthropicModel
    from legato.providers import ChatChunk as ChatChunk
    from legato.providers import ChatRequest as ChatRequest
    from legato.providers import ChatResponse as ChatResponse
    from legato.providers import EmbedRequest as EmbedRequest
    from legato.providers import EmbedResponse as EmbedResponse
    from legato.providers import Message as Message
    from legato.providers import Model as Model
    from legato.providers import OpenAIModel as OpenAIModel
    from legato.providers import PythonModel as PythonModel
    from legato.providers import Tool as Tool
    from legato.providers import ToolCall as ToolCall
    from legato.providers import Usage as Usage
    from legato.resilience import Bulkhead as Bulkhead
    from legato.resilience import CircuitBreaker as CircuitBreaker
    from legato.resilience import Hedge as Hedge
    from legato.resilience import RateLimiter as RateLimiter
    from legato.resilience import Retry as Retry
    from legato.resilience import RetryBudget as RetryBudget
    from legato.resilience import Timeout as Timeout
    from legato.retry import RetryPolicy as RetryPolicy
    from legato.routing import Cascade as Cascade
    from legato.routing import Deployment as Deployment
    from legato.routing import Fallbacks as Fallbacks
    from legato.routing import Router as Router
    from legato.routing import Selector as Selector
    from legato.server import ServerSettings as ServerSettings
    from legato.server import create_app as create_app
    from legato.spec import load_pipeline as load_pipeline
    from legato.spec import loads_pipeline as loads_pipeline
    from legato.store import DurableRunner as DurableRunner
    from legato.store import Journal as Journal
    from legato.store import RunStore as RunStore
    from legato.store import run_durably as run_durably
    from legato.testing import FakeProvider as FakeProvider


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'legato' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
