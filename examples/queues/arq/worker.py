"""arq worker for the `reports` queue: `arq worker.WorkerSettings`."""

import asyncio
import os

from arq import Retry
from arq.connections import RedisSettings


async def build_report(ctx, report_id: int) -> str:
    if ctx["job_try"] == 1 and report_id % 10 == 0:
        # Every tenth report's data source is slow to warm up: try again later.
        raise Retry(defer=30)
    await asyncio.sleep(2)
    return f"report {report_id} built"


class WorkerSettings:
    functions = [build_report]
    queue_name = "arq:queue"
    max_jobs = 4
    redis_settings = RedisSettings.from_dsn(os.environ.get("REDIS_URL", "redis://localhost:6379/0"))
