"""The actor the Dramatiq workers run: send a receipt (here: sleep as long as it would take)."""

import os
import time

import dramatiq
from dramatiq.brokers.redis import RedisBroker

dramatiq.set_broker(RedisBroker(url=os.environ.get("REDIS_URL", "redis://localhost:6379/0")))


@dramatiq.actor(queue_name="receipts", max_retries=3, min_backoff=30_000)
def send_receipt(order_id: int, seconds: float = 2.0) -> None:
    time.sleep(seconds)
