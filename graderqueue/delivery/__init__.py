"""Results to the platforms' return URLs.

``queue.complete.complete()`` writes a ``Delivery`` row in the transaction that makes
a job done, so a result is never done without a delivery being owed. This
module works the outbox off: it claims due rows for a short lease, posts the
result tokens (PROTOCOL.md "Result delivery") outside any transaction, up to
``delivery_concurrency`` at once, and records the outcomes, several per
transaction. A row is retried with capped exponential backoff until the
platform answers ``{"bSuccess": true}``, or given up after
``delivery_give_up_after_sec``.

Several workers (threads of every web worker process, ``graderqueue
deliver`` on any node) may run at once: a row is claimed by one of them in
the database (``SKIP LOCKED`` on MariaDB, the write lock on SQLite), and the
final update only counts if that worker still holds the claim, so a row that
is delivered is never posted again. The one case the queue cannot rule out is
a process killed between the platform's answer and the record of it; the
result is then sent once more when the lease runs out.

Modules: :mod:`~graderqueue.delivery.outbox` (the rows), :mod:`~graderqueue.delivery.post`
(one HTTP post), :mod:`~graderqueue.delivery.worker` (the loop),
:mod:`~graderqueue.delivery.in_app` (its thread in each web worker) and
:mod:`~graderqueue.delivery.redelivery` (sending again on demand). The result
token itself is made in :mod:`graderqueue.protocol.results`.
"""
