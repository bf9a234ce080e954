"""Enqueues a burst of arq jobs: python producer.py redis://localhost:6379/0 200"""

import asyncio
import sys

from arq import create_pool
from arq.connections import RedisSettings


async def main(url: str, count: int) -> None:
    pool = await create_pool(RedisSettings.from_dsn(url))
    for i in range(count):
        await pool.enqueue_job("build_report", i)
    print(f"enqueued {count} jobs")
    await pool.aclose()


asyncio.run(main(sys.argv[1], int(sys.argv[2])))
