"""Configuration from the environment that template.yaml gives each function.

Each function gets only the variables it needs, so each value is read when first used; a missing
one is a deployment mistake and fails loudly, naming the variable.
"""

from __future__ import annotations

import os


class MissingSettingError(RuntimeError):
    pass


def _required(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        raise MissingSettingError(f"environment variable {name} is not set (see template.yaml)")
    return value


class Settings:
    @property
    def connections_table(self) -> str:
        return _required("CONNECTIONS_TABLE")

    @property
    def jobs_table(self) -> str:
        return _required("JOBS_TABLE")

    @property
    def images_bucket(self) -> str:
        return _required("IMAGES_BUCKET")

    @property
    def state_machine_arn(self) -> str:
        return _required("STATE_MACHINE_ARN")

    @property
    def results_queue_url(self) -> str:
        return _required("RESULTS_QUEUE_URL")

    @property
    def websocket_endpoint(self) -> str:
        """https://{api}.execute-api.{region}.amazonaws.com/{stage}: the @connections API."""
        return _required("WEBSOCKET_ENDPOINT")

    @property
    def public_base_url(self) -> str:
        """https://{CloudFront domain}: serves public/ images, styles/ and the pages."""
        return _required("PUBLIC_BASE_URL").rstrip("/")

    @property
    def idempotency_table(self) -> str:
        return _required("IDEMPOTENCY_TABLE")

    @property
    def presigned_url_seconds(self) -> int:
        return int(os.environ.get("PRESIGNED_URL_SECONDS", "900"))

    @property
    def max_upload_bytes(self) -> int:
        return int(os.environ.get("MAX_UPLOAD_BYTES", str(20 * 1024 * 1024)))

    @property
    def connection_ttl_seconds(self) -> int:
        """API Gateway closes a connection after 2 h; rows outlive that a little, then expire."""
        return int(os.environ.get("CONNECTION_TTL_SECONDS", str(3 * 3600)))

    @property
    def private_retention_days(self) -> int:
        """How long a job item that is not a Feed item (private, or failed) is kept."""
        return int(os.environ.get("PRIVATE_RETENTION_DAYS", "3"))

    # --- the worker pool (functions/scale_workers; template parameters of the same names) ----------

    @property
    def workers_table(self) -> str:
        return _required("WORKERS_TABLE")

    @property
    def work_queue_url(self) -> str:
        return _required("WORK_QUEUE_URL")

    @property
    def worker_job_queue(self) -> str:
        """The Batch job queue that runs the workers (a name or an ARN)."""
        return _required("WORKER_JOB_QUEUE")

    @property
    def worker_job_definition(self) -> str:
        return _required("WORKER_JOB_DEFINITION")

    @property
    def max_workers(self) -> int:
        return int(os.environ.get("MAX_WORKERS", "4"))

    @property
    def min_warm_workers(self) -> int:
        return int(os.environ.get("MIN_WARM_WORKERS", "0"))

    @property
    def jobs_per_worker(self) -> int:
        return int(os.environ.get("JOBS_PER_WORKER", "4"))

    @property
    def worker_start_seconds(self) -> int:
        """How long a worker may take to come up (an instance, the image, PyTorch) before the
        pool counts it as failed; also how long a job waits for any worker at all."""
        return int(os.environ.get("WORKER_START_TIMEOUT_SECONDS", "600"))

    # --- limits (styleservice.limits; template parameters of the same names) ----------------------

    @property
    def rate_limits_table(self) -> str:
        return _required("RATE_LIMITS_TABLE")

    @property
    def jobs_per_connection(self) -> int:
        return int(os.environ.get("JOBS_PER_CONNECTION", "5"))

    @property
    def connection_window_seconds(self) -> int:
        return 60 * int(os.environ.get("CONNECTION_WINDOW_MINUTES", "10"))

    @property
    def jobs_per_source_ip(self) -> int:
        return int(os.environ.get("JOBS_PER_SOURCE_IP", "20"))

    @property
    def source_ip_window_seconds(self) -> int:
        return 60 * int(os.environ.get("SOURCE_IP_WINDOW_MINUTES", "60"))

    @property
    def previews_per_connection(self) -> int:
        """PREVIEW_STYLES requests one connection may make per connection window (0: no limit)."""
        return int(os.environ.get("PREVIEWS_PER_CONNECTION", "60"))

    @property
    def previews_per_source_ip(self) -> int:
        """PREVIEW_STYLES requests one address may make per address window (0: no limit)."""
        return int(os.environ.get("PREVIEWS_PER_SOURCE_IP", "300"))

    @property
    def worker_device(self) -> str:
        """What the GPU workers paint on ("cuda" or "cpu"), until one has measured it."""
        return os.environ.get("WORKER_DEVICE", "cuda")

    @property
    def max_active_jobs(self) -> int:
        return int(os.environ.get("MAX_ACTIVE_JOBS", "60"))

    @property
    def access_key(self) -> str:
        """ "" (the default): anyone may connect; else $connect wants ?key=<this>."""
        return os.environ.get("ACCESS_KEY", "")


settings = Settings()
