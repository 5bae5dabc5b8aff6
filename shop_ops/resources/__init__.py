"""One ConfigurableResource per outside system (containers, registry, postgres, notifier, k6, router or aws), from settings."""

from __future__ import annotations

import os

import dagster as dg

from shop_ops.localstack.docker_api import DockerApi
from shop_ops.resources.aws import AwsResource
from shop_ops.resources.containers import ContainersResource
from shop_ops.resources.k6 import K6Resource
from shop_ops.resources.notifier import NotifierResource
from shop_ops.resources.postgres import PostgresResource
from shop_ops.resources.registry import RegistryResource
from shop_ops.resources.router import RouterResource
from shop_ops.settings import Settings


def registry_from_settings(settings: Settings) -> RegistryResource:
    """The local registry (credentials file written by the local environment), or ECR in the aws profile.

    SHOP_OPS_REGISTRY_URL / SHOP_OPS_REGISTRY_CREDENTIALS_FILE override both.
    """
    if settings.profile == "local":
        url = f"http://127.0.0.1:{settings.registry.port}"
        credentials = str(settings.state_path / "registry" / "credentials.json")
    else:
        assert settings.aws is not None
        url, credentials = f"https://{settings.aws.ecr_registry}", None
    return RegistryResource(
        url=os.environ.get("SHOP_OPS_REGISTRY_URL") or url,
        credentials_file=os.environ.get("SHOP_OPS_REGISTRY_CREDENTIALS_FILE") or credentials,
    )


def resources_from_settings(settings: Settings) -> dict[str, dg.ConfigurableResource]:
    return {
        "containers": ContainersResource(docker_host=DockerApi(settings.state_path).docker_host),
        "registry": registry_from_settings(settings),
        "postgres": PostgresResource.from_settings(settings),
        "notifier": NotifierResource(),
        "k6": K6Resource(),
        **(
            {"router": RouterResource()}
            if settings.profile == "local"
            else {"aws": AwsResource.from_settings(settings)}
        ),
    }
