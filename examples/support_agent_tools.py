"""Tools of the support agent (``support_agent.yaml``): orders from a SQLite file and refunds.

The agent refunds up to ``REFUND_LIMIT`` itself; a larger refund is not made by the
tool but returned as ``needs_approval``, picked up by :func:`over_limit` after the
agent answered, put to a person by the pipeline's ``wait`` step, and made by
:func:`approved_refund` once approved.

The database is built from ``data/orders.sql`` the first time a tool needs it, at
``$SUPPORT_ORDERS_DB`` (default: ``legato-support-orders.db`` in the temporary
directory), so the example never writes into the repository.
"""

from __future__ import annotations

import json
import os
import sqlite3
import tempfile
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field

SCHEMA = Path(__file__).with_name("data") / "orders.sql"
REFUND_LIMIT = 100.0  # USD; larger refunds go to a person


def _db() -> sqlite3.Connection:
    path = Path(os.environ.get("SUPPORT_ORDERS_DB") or Path(tempfile.gettempdir()) / "legato-support-orders.db")
    fresh = not path.exists()
    conn = sqlite3.connect(path)
    conn.row_factory = sqlite3.Row
    if fresh:
        conn.executescript(SCHEMA.read_text())
    return conn


def lookup_order(order_id: str) -> dict[str, Any]:
    """Find an order: its customer, state, total (USD), carrier and the refunds made so far.

    Args:
        order_id: The order id, like "A-1001".
    """
    with _db() as conn:
        order = conn.execute("SELECT * FROM orders WHERE id = ?", (order_id,)).fetchone()
        if order is None:
            return {"error": f"there is no order {order_id!r}"}
        refunded = conn.execute("SELECT COALESCE(SUM(amount), 0) FROM refunds WHERE order_id = ?", (order_id,))
        return {**dict(order), "refunded": refunded.fetchone()[0]}


def refund(
    order_id: str,
    amount: Annotated[float, Field(gt=0)],
    reason: str,
) -> dict[str, Any]:
    """Refund part or all of an order. Refunds over 100 USD are not made here: they are
    handed to a person for approval.

    Args:
        order_id: The order id, like "A-1001".
        amount: How much to refund, in USD.
        reason: Why, in a few words (kept with the refund).
    """
    order = lookup_order(order_id)
    if "error" in order:
        return order
    left = round(order["total"] - order["refunded"], 2)
    if amount > left:
        return {"status": "refused", "why": f"only {left} USD of {order_id} can still be refunded"}
    if amount > REFUND_LIMIT:
        why = f"refunds over {REFUND_LIMIT:.0f} USD need a person's approval; one has been asked"
        return {"status": "needs_approval", "why": why}
    return _make(order_id, amount, reason)


def _make(order_id: str, amount: float, reason: str) -> dict[str, Any]:
    with _db() as conn:
        cursor = conn.execute(
            "INSERT INTO refunds (order_id, amount, reason) VALUES (?, ?, ?)", (order_id, amount, reason)
        )
    return {"status": "refunded", "refund_id": cursor.lastrowid, "amount": amount}


def over_limit(tool_calls: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The refund the agent asked for but could not make (over the limit), or None."""
    for call in tool_calls:
        if call["name"] != "refund" or json.loads(call["content"]).get("status") != "needs_approval":
            continue
        arguments = json.loads(call["arguments"])
        return {"order_id": arguments["order_id"], "amount": float(arguments["amount"]), "reason": arguments["reason"]}
    return None


def approved_refund(request: dict[str, Any]) -> dict[str, Any]:
    """Make a refund a person approved (still never more than is left of the order)."""
    order = lookup_order(request["order_id"])
    left = round(order["total"] - order["refunded"], 2)
    if request["amount"] > left:
        return {"status": "refused", "why": f"only {left} USD of {request['order_id']} can still be refunded"}
    return _make(request["order_id"], request["amount"], request["reason"])
