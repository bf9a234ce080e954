"""The order API: ``POST /orders`` records an order and enqueues its two
Celery tasks; ``GET /orders/{id}`` reports how far it got.

    uvicorn app.api:app --host 0.0.0.0 --port 8000
"""

import time
import uuid
from typing import List

from fastapi import FastAPI, HTTPException
from pydantic import BaseModel, Field

from app import tasks

app = FastAPI(title="orders")


class Item(BaseModel):
    sku: str = Field(min_length=1)
    quantity: int = Field(gt=0)


class OrderIn(BaseModel):
    items: List[Item] = Field(min_length=1)
    amount_cents: int = Field(gt=0, alias="amountCents")
    express: bool = False


@app.post("/orders", status_code=202)
def create_order(order: OrderIn):
    order_id = uuid.uuid4().hex
    tasks.store().hset(
        tasks.order_key(order_id),
        mapping={"status": "pending", "createdAt": f"{time.time():.3f}"},
    )
    priority = tasks.PRIORITY["express" if order.express else "standard"]
    items = [i.model_dump() for i in order.items]
    tasks.charge.apply_async(
        args=[order_id, order.amount_cents], queue="payments", priority=priority
    )
    tasks.reserve.apply_async(args=[order_id, items], queue="inventory", priority=priority)
    return {"id": order_id, "status": "pending"}


@app.get("/orders/{order_id}")
def get_order(order_id: str):
    record = tasks.store().hgetall(tasks.order_key(order_id))
    if not record:
        raise HTTPException(status_code=404, detail="no such order")
    return {
        "id": order_id,
        "status": record.get("status", "pending"),
        "payment": record.get("payment", "pending"),
        "inventory": record.get("inventory", "pending"),
    }


@app.get("/healthz")
def healthz():
    tasks.store().ping()
    return {"status": "ok"}
