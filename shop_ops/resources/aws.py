"""AWS API clients (boto3) for the aws profile: region and an optional endpoint; credentials only from the AWS chain.

`AwsResource` holds no secrets: boto3 finds credentials itself (environment variables,
AWS_PROFILE / shared config, SSO, container or instance role). `endpoint_url` points every
client at another endpoint (a local moto server in tests; definitions.py takes it from
SHOP_OPS_AWS_ENDPOINT_URL).
"""

from __future__ import annotations

from typing import Any

import boto3
import dagster as dg
from botocore.config import Config
from pydantic import Field


class AwsResource(dg.ConfigurableResource):
    """boto3 clients for one region; no credential fields on purpose (the default chain supplies them)."""

    region: str = Field(description="AWS region, e.g. eu-central-1")
    endpoint_url: str | None = Field(default=None, description="another endpoint for every client (tests: moto)")
    max_attempts: int = Field(default=5, ge=1, description="botocore retries (standard mode) per call")

    def session(self) -> boto3.session.Session:
        return boto3.session.Session(region_name=self.region)

    def client(self, service_name: str) -> Any:
        """A boto3 client for `service_name` ("ecs", "s3", "ecr", ...)."""
        config = Config(retries={"mode": "standard", "max_attempts": self.max_attempts})
        return self.session().client(service_name, endpoint_url=self.endpoint_url, config=config)

    def ecs(self) -> Any:
        return self.client("ecs")
