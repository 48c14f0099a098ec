"""One way to send a Celery task: after the transaction commits, never blocking, never raising.

    from fusionreview.dispatch import task_dispatch
    task_dispatch(classify_listings, args=[[listing.pk]])

Why one helper:

- **On commit.** The worker must see the rows the task is about; a task sent inside a
  transaction that later rolls back would act on nothing.
- **Broker down is not an error for the caller.** The row that asked for the work is already
  committed and is the source of truth; the periodic sweeper (`classifier.listings.tasks.listings_sweep`)
  finds work that was never sent (or was lost with a Redis restart) and sends it again. A
  failed publish is therefore logged and counted, and the request that caused it succeeds.
- **Bounded time.** The broker connection and publish have short timeouts (settings:
  `CELERY_BROKER_CONNECTION_TIMEOUT`, the transport's socket timeouts) and at most one quick
  retry, so an ingest request returns in about a second while Redis is down instead of
  blocking for the default retry policy.

In the embedded demo (no broker, `CELERY_TASK_ALWAYS_EAGER`) the task runs in-process; an
exception there is logged the same way (the row stays for the sweeper or `classify_pending`).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from django.conf import settings
from django.db import transaction

log = logging.getLogger(__name__)

# One quick retry covers a connection the pool kept from before a Redis restart; more would
# only make the caller wait while the broker is really down.
PUBLISH_RETRY_POLICY = {"max_retries": 1, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.2}


@contextlib.contextmanager
def _no_result_subscription() -> Iterator[None]:
    """Send without subscribing to the task's result.

    The Redis result backend subscribes (pub/sub) to every sent task's result unless the
    sender is known never to wait -- the flag Celery's own workers set. Callers of this helper
    never wait for a result (the worker still stores it), and the subscription would add a
    second connection, with its own ~20 s reconnect loop, to every send while Redis is down.
    """
    from celery import _state

    previous = _state.task_join_will_block()
    _state._set_task_join_will_block(True)
    try:
        yield
    finally:
        _state._set_task_join_will_block(previous)


def task_publish(
    task: Any,
    *,
    args: Sequence[Any] = (),
    kwargs: dict[str, Any] | None = None,
    countdown: float | None = None,
    queue: str | None = None,
) -> bool:
    """Send `task` now; True when the broker took it (or the eager run finished), False otherwise."""
    from fusionreview import metrics

    options: dict[str, Any] = {"retry": True, "retry_policy": PUBLISH_RETRY_POLICY}
    if countdown is not None:
        options["countdown"] = countdown
    if queue is not None:
        options["queue"] = queue
    try:
        with _no_result_subscription():
            task.apply_async(args=list(args), kwargs=kwargs or {}, **options)
    except Exception as exc:
        metrics.DISPATCH_FAILURES.labels(task=task.name).inc()
        if settings.CELERY_TASK_ALWAYS_EAGER:
            log.exception("in-process task %s failed for %s; the sweeper will retry", task.name, list(args))
        else:
            log.warning(
                "broker unavailable, %s not sent for %s (%s: %s); the sweeper will send it",
                task.name,
                list(args),
                type(exc).__name__,
                exc,
                extra={"task": task.name},
            )
        return False
    return True


def task_dispatch(
    task: Any,
    *,
    args: Sequence[Any] = (),
    kwargs: dict[str, Any] | None = None,
    countdown: float | None = None,
    queue: str | None = None,
    after_send: Callable[[bool], None] | None = None,
) -> None:
    """Send `task` once the current transaction commits (at once outside a transaction).

    Args:
        task: a Celery task (`classify_listings`, ...); its arguments must be ids and primitives.
        args, kwargs, countdown, queue: as for `apply_async`.
        after_send: called with True/False after the publish attempt (e.g. to mark the row sent).
    """
    frozen_args = list(args)

    def _send() -> None:
        sent = task_publish(task, args=frozen_args, kwargs=kwargs, countdown=countdown, queue=queue)
        if after_send is not None:
            try:
                after_send(sent)
            except Exception:  # bookkeeping only (cache markers): never fail the request for it
                log.warning("after-send hook of %s failed", task.name, exc_info=True)

    transaction.on_commit(_send)
