"""The aws profile's Dagster storage, redacting (see redaction.py): PostgreSQL event log and S3 compute logs."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dagster._serdes import ConfigurableClassData
from dagster_aws.s3.compute_log_manager import S3ComputeLogManager
from dagster_postgres.event_log.event_log import PostgresEventLogStorage
from dagster_postgres.utils import get_token_provider_from_config, pg_url_from_config

from shop_ops.security.redaction import RedactingComputeLogManager, RedactingEventLogMixin


class RedactingPostgresEventLogStorage(RedactingEventLogMixin, PostgresEventLogStorage):
    """`event_log_storage` for Dagster's PostgreSQL (same config as dagster_postgres's own)."""

    @classmethod
    def from_config_value(  # type: ignore[override]
        cls, inst_data: ConfigurableClassData | None, config_value: Mapping[str, Any]
    ) -> RedactingPostgresEventLogStorage:
        return cls(
            inst_data=inst_data,
            postgres_url=pg_url_from_config(config_value),
            should_autocreate_tables=config_value.get("should_autocreate_tables", True),
            token_provider=get_token_provider_from_config(config_value),
        )


class RedactingS3ComputeLogManager(S3ComputeLogManager):
    """dagster_aws's S3 compute logs (same config): captured locally through the redactor, then uploaded."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # S3ComputeLogManager captures with a LocalComputeLogManager over its local folder and uploads the files.
        self._local_manager = RedactingComputeLogManager(self._local_manager._base_dir)
