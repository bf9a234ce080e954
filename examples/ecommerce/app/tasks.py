"""Celery workers for the order flow.

Two queues, each consumed by its own Deployment and scaled by its own
WorkerPool (examples/ecommerce/k8s/):

* ``payments`` — ``payments.charge``: charge the customer;
* ``inventory`` — ``inventory.reserve``: reserve the stock.

The broker is Redis (kombu's Redis transport) at ``$REDIS_URL``; the order
records live in the same Redis, as hashes ``order:<id>``.

Express orders are sent with priority 0, standard ones with priority 6. On
Redis, kombu keeps one list per priority step — ``payments`` and
``payments\\x06\\x166`` here — and the workers drain them in priority order;
the operator's Celery trigger sums all of them (plus, with
``includeInFlight``, the tasks a worker has taken but not yet acknowledged).

Run a worker with::

    celery -A app.tasks worker -Q payments
"""

import os
import time

import redis
from celery import Celery

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")

# Simulated latency of the payment provider and the stock service (seconds).
PAYMENT_SECONDS = float(os.environ.get("PAYMENT_SECONDS", "0.2"))
INVENTORY_SECONDS = float(os.environ.get("INVENTORY_SECONDS", "0.05"))

PRIORITY = {"express": 0, "standard": 6}

app = Celery("ecommerce", broker=REDIS_URL)
app.conf.update(
    task_routes={
        "payments.charge": {"queue": "payments"},
        "inventory.reserve": {"queue": "inventory"},
    },
    # Acknowledge after the task ran: a worker killed by a scale-in gives its
    # task back instead of losing it. Tasks are idempotent (see _record).
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    # Take one task at a time, so tasks wait in Redis (where the operator
    # counts them) rather than in a busy worker's prefetch buffer.
    worker_prefetch_multiplier=1,
    task_serializer="json",
    accept_content=["json"],
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
    worker_send_task_events=False,
)

_store = None


def store():
    """The order store (one client per process, created on first use)."""
    global _store
    if _store is None:
        _store = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    return _store


def order_key(order_id):
    return f"order:{order_id}"


def _record(order_id, field, value):
    """Sets one step's result; the order completes once both steps are done.

    Setting a field is idempotent, so a task redelivered after a worker was
    stopped mid-way records the same result again.
    """
    key = order_key(order_id)
    with store().pipeline() as pipe:
        pipe.hset(key, field, value)
        pipe.hmget(key, "payment", "inventory")
        _, (payment, inventory) = pipe.execute()
    if payment == "charged" and inventory == "reserved":
        store().hset(key, "status", "completed")


@app.task(name="payments.charge")
def charge(order_id, amount_cents):
    time.sleep(PAYMENT_SECONDS)
    _record(order_id, "payment", "charged")
    return {"order": order_id, "charged": amount_cents}


@app.task(name="inventory.reserve")
def reserve(order_id, items):
    time.sleep(INVENTORY_SECONDS)
    _record(order_id, "inventory", "reserved")
    return {"order": order_id, "items": len(items)}
