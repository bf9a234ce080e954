"""Sends a burst of Dramatiq messages: REDIS_URL=redis://localhost:6379/0 python producer.py 500"""

import sys

from tasks import send_receipt

count = int(sys.argv[1])
for i in range(count):
    send_receipt.send(i)
# Delayed work counts once it is due (include Scheduled).
send_receipt.send_with_options(args=(-1,), delay=5 * 60 * 1000)
print(f"sent {count} messages to the receipts queue")
