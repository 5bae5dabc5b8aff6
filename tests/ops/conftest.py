"""Fixtures for the shop_ops code location: engines and clients over the real Docker API and registry, one images run."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pytest

from shop_ops.assets.images import image_assets
from shop_ops.localstack.docker_api import DockerApi
from shop_ops.localstack.registry import RegistryServer
from shop_ops.release.images import BuiltImage, shop_image_specs
from shop_ops.resources.containers import ContainersResource, DockerEngine
from shop_ops.resources.registry import RegistryClient, RegistryResource


@pytest.fixture(scope="session")
def engine(docker_api: DockerApi) -> Iterator[DockerEngine]:
    eng = DockerEngine(docker_api.docker_host)
    yield eng
    eng.close()


@pytest.fixture(scope="session")
def registry_client(registry: RegistryServer) -> RegistryClient:
    return RegistryClient(registry.url, registry.credentials_file)


@pytest.fixture(scope="session")
def ops_resources(docker_api: DockerApi, registry: RegistryServer, tmp_path_factory) -> dict[str, object]:
    """The resources the assets need, pointed at the test services; values persist across runs (fs IO manager)."""
    return {
        "containers": ContainersResource(docker_host=docker_api.docker_host),
        "registry": RegistryResource(url=registry.url, credentials_file=str(registry.credentials_file)),
        "io_manager": dg.FilesystemIOManager(base_dir=str(tmp_path_factory.mktemp("io"))),
    }


@dataclass
class ImagesRun:
    result: dg.ExecuteInProcessResult
    instance: dg.DagsterInstance
    images: dict[str, BuiltImage]


@pytest.fixture(scope="session")
def images_run(ops_resources, engine, tmp_path_factory) -> Iterator[ImagesRun]:
    """The images group (both images, checks, release tags) materialized once, for real."""
    definitions = [d for spec in shop_image_specs() for d in image_assets(spec)]
    with dg.instance_for_test(temp_dir=str(tmp_path_factory.mktemp("dagster"))) as instance:
        result = dg.materialize(definitions, resources=ops_resources, instance=instance, raise_on_error=False)
        images = {name: result.output_for_node(f"{name}_image") for name in ("backend", "frontend") if result.success}
        yield ImagesRun(result=result, instance=instance, images=images)
    for image in images.values():  # the test registry's names; the images go with them
        engine.remove_image(image.ref)
        engine.remove_image(image.pinned_ref)


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path
