"""``RunStore``: runs, step checkpoints, events, idempotency and leases.

Every write that belongs to a running run is *fenced* by its lease: the same
transaction that inserts a checkpoint checks that this worker still owns the
run, so a worker that stalled past its lease and was taken over can never write
over its successor (it gets :class:`~legato.errors.LeaseLost` instead).

The class is built in layers, one module each: the connection and its
transactions (:mod:`legato.store._connection`), reads (:mod:`._run_reads`),
writes and idempotency (:mod:`._run_writes`), leases and cancels
(:mod:`._run_leases`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from legato.store._run_leases import RunLeases

__all__ = ["RunStore"]


class RunStore(RunLeases):
    """The durable record of runs. Cheap to construct; :meth:`open` connects and
    migrates. Use as ``async with RunStore(url) as store:``.

    ``url``: ``None`` (``$LEGATO_DATABASE_URL`` or ``./.legato/legato.db``), a
    SQLite path or ``sqlite:///PATH``, or ``postgresql://HOST/DB``.
    ``create=False`` is for readers: a store that does not exist raises
    :class:`~legato.errors.StoreNotFound` instead of being created, and a SQLite
    file that cannot be written is opened read-only (:attr:`read_only`).
    ``clock`` returns epoch seconds; inject one to test leases in virtual time.
    ``redactor`` scrubs error messages, event data, step metadata and journal text
    before they are written (default: the process-wide
    :func:`~legato.redaction.default_redactor`, which ``observe.redact`` in
    ``legato.yaml`` extends). Run inputs and step outputs are stored as given:
    resuming a run needs them verbatim, so a step must not return secrets.
    ``encryption_key``: a key reference (``env:NAME``, ``file:PATH``) that turns on
    envelope encryption of every payload (default: ``$LEGATO_STORE_KEY``, else
    ``store.encryption.key`` in ``legato.yaml``; see docs/data-protection.md).
    """

    async def record_run(
        self,
        pipeline: Any,
        inputs: Mapping[str, Any],
        /,
        *,
        run_id: str | None = None,
        subscribers: Iterable[Any] = (),
        control: Any = None,
    ) -> Any:
        """Run ``pipeline`` durably in this store (what ``Pipeline(..., store=store).run``
        calls): recorded, checkpointed, resumable with ``legato runs resume``."""
        from legato.spec._python import python_reference
        from legato.store._durable import DurableRunner

        source = pipeline.source or python_reference(pipeline)  # what `legato runs resume` reloads
        return await DurableRunner(self).run(
            pipeline, inputs, run_id=run_id, subscribers=subscribers, control=control, source=source
        )
