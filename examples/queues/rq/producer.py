"""Enqueues a burst of RQ jobs: python producer.py redis://localhost:6379/0 500"""

import sys
from datetime import timedelta

from redis import Redis
from rq import Queue, Retry

url, count = sys.argv[1], int(sys.argv[2])
q = Queue("images", connection=Redis.from_url(url))
for i in range(count):
    q.enqueue("tasks.resize", i, retry=Retry(max=3, interval=30))
# Scheduled work counts once it is due (include Scheduled).
q.enqueue_in(timedelta(minutes=5), "tasks.resize", -1)
print(f"enqueued {count} jobs on {q.name}: {q.count} waiting")
