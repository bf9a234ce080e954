"""Huey tasks for the `mailer` instance: `huey_consumer tasks.huey -w 4`."""

import os
import time

from huey import RedisHuey

huey = RedisHuey("mailer", url=os.environ.get("REDIS_URL", "redis://localhost:6379/0"))


@huey.task(retries=3, retry_delay=60)
def send_newsletter(recipient: str) -> str:
    time.sleep(1)
    return f"sent to {recipient}"
