"""The legato gateway: an OpenAI- and Anthropic-compatible HTTP API over legato's models,
the runs API, API keys with scopes, limits and budgets, and health endpoints.

::

    from legato.server import ServerSettings, create_app

    app = create_app(ServerSettings(database_url="postgresql://db/legato", redis_url="redis://cache"))

``legato serve`` runs the same app on uvicorn. See ``docs/gateway.md``.
"""

from legato.server._app import create_app, open_gateway
from legato.server._audit import AuditAction, AuditLog, AuditRecord
from legato.server._catalog import MappingCatalog, ModelCatalog, catalog_from_config
from legato.server._errors import GatewayError
from legato.server._keys import SCOPES, ApiKey, KeyStore
from legato.server._settings import DashboardSettings, ServerSettings, SSRFSettings, load_settings
from legato.server._ssrf import SSRFPolicy

__all__ = [
    "SCOPES",
    "ApiKey",
    "AuditAction",
    "AuditLog",
    "AuditRecord",
    "DashboardSettings",
    "GatewayError",
    "KeyStore",
    "MappingCatalog",
    "ModelCatalog",
    "SSRFPolicy",
    "SSRFSettings",
    "ServerSettings",
    "catalog_from_config",
    "create_app",
    "load_settings",
    "open_gateway",
]
