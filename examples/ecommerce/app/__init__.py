"""The e-commerce case study: an order API (app.api) and its Celery workers (app.tasks)."""
