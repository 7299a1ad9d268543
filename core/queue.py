"""Celery configuration shared by the API (which only sends tasks) and the workers.

Kept free of Celery imports so the API process can build its client without pulling in the
worker's task modules (and with them torch).
"""

from __future__ import annotations

from typing import Any

from core.settings import Settings

GENERATE_QUEUE = "generate"
CALIBRATE_QUEUE = "calibrate"
MAINTENANCE_QUEUE = "maintenance"
QUEUES: tuple[str, ...] = (GENERATE_QUEUE, CALIBRATE_QUEUE, MAINTENANCE_QUEUE)

GENERATE_TASK = "rcs.generate"
#: Several generations in one message (`services/task_batching.py`).
GENERATE_BATCH_TASK = "rcs.generate_batch"
CALIBRATE_TASK = "rcs.calibrate"
AUTOTUNE_TASK = "rcs.autotune"
HEARTBEAT_TASK = "rcs.heartbeat"
LOST_TASKS_TASK = "rcs.resend_lost_tasks"
#: A generation's `error` starts with this when its input (prompt plus token budget) does not fit
#: the model's context: the caller's fault, answered 422 by the synchronous APIs.
INPUT_TOO_LONG = "input_too_long: "

TASK_ROUTES: dict[str, dict[str, str]] = {
    GENERATE_TASK: {"queue": GENERATE_QUEUE},
    GENERATE_BATCH_TASK: {"queue": GENERATE_QUEUE},
    CALIBRATE_TASK: {"queue": CALIBRATE_QUEUE},
    AUTOTUNE_TASK: {"queue": MAINTENANCE_QUEUE},
    HEARTBEAT_TASK: {"queue": MAINTENANCE_QUEUE},
    LOST_TASKS_TASK: {"queue": MAINTENANCE_QUEUE},
}


#: The kombu transport class, by path (resolved by kombu; core imports no I/O).
BROKER_TRANSPORT = "services.broker_transport:Transport"


def celery_config(settings: Settings) -> dict[str, Any]:
    """Celery settings for `settings`: Redis, in production and embedded alike."""
    config: dict[str, Any] = {
        "broker_url": settings.celery_broker_url,
        # kombu's Redis transport, sharing one client per channel (`services/broker_transport.py`).
        "broker_transport": BROKER_TRANSPORT,
        "task_routes": TASK_ROUTES,
        "task_default_queue": GENERATE_QUEUE,
        "task_serializer": "json",
        "accept_content": ["json"],
        # Results live in PostgreSQL rows, not in a Celery result backend.
        "task_ignore_result": True,
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        # Consumer threads each hold one request, running in the engine loop or waiting for
        # fair admission, unacknowledged until its row is written; nothing is prefetched beyond.
        "worker_pool": "threads",
        "worker_concurrency": settings.consumer_threads,
        "worker_prefetch_multiplier": 1,
        "broker_connection_retry_on_startup": True,
        "worker_hijack_root_logger": False,
        "beat_schedule": {
            "heartbeat": {"task": HEARTBEAT_TASK, "schedule": settings.heartbeat_seconds},
            "autotune": {"task": AUTOTUNE_TASK, "schedule": settings.autotune_seconds},
            "resend-lost-tasks": {
                "task": LOST_TASKS_TASK,
                "schedule": settings.lost_task_check_seconds,
            },
        },
    }
    config["broker_transport_options"] = {"visibility_timeout": settings.visibility_timeout}
    return config
