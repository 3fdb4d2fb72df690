"""``legato runs``: list, show, resume, cancel, recover, prune and erase stored runs.

One module per concern: ``_common`` (the group, the store opener, reporting),
``_durable`` (``legato run`` with a store), ``_inspect`` (list, show) and
``_manage`` (resume, cancel, recover, prune, erase); importing this package registers the
commands, in that order.

Also the durable path of ``legato run`` (:func:`stored_run`): the run is recorded
in the store (``./.legato/legato.db`` unless ``--database-url``), checkpointed
step by step, and can be resumed with ``legato runs resume RUN_ID`` after a crash.
"""

from legato.cli.runs._common import (
    DATABASE_URL_HELP,
    fail,
    load_pipeline_file,
    not_found,
    open_store,
    operator,
    parse_duration,
    print_waiting,
    report_result,
    runs_app,
)
from legato.cli.runs._durable import estimate_cost, print_recall, stored_run
from legato.cli.runs._inspect import list_runs, show
from legato.cli.runs._manage import cancel, erase, prune, recover, resume, who_cancels

__all__ = [
    "DATABASE_URL_HELP",
    "cancel",
    "erase",
    "estimate_cost",
    "fail",
    "list_runs",
    "load_pipeline_file",
    "not_found",
    "open_store",
    "operator",
    "parse_duration",
    "print_recall",
    "print_waiting",
    "prune",
    "recover",
    "report_result",
    "resume",
    "runs_app",
    "show",
    "stored_run",
    "who_cancels",
]
