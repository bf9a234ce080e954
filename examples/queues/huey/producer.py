"""Enqueues a burst of Huey tasks: REDIS_URL=redis://localhost:6379/0 python producer.py 300"""

import sys

from tasks import send_newsletter

count = int(sys.argv[1])
for i in range(count):
    send_newsletter(f"reader{i}@example.com")
# A task with a delay counts as Scheduled once it is due.
send_newsletter.schedule(args=("late@example.com",), delay=600)
print(f"enqueued {count} tasks")
