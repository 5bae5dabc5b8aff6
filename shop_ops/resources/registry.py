"""The image registry's OCI distribution HTTP API (httpx): catalog, tags, manifest digests, re-tagging, deletion.

`RegistryClient` is the plain client; `RegistryResource` its Dagster resource. Credentials are
read from a JSON file (`username`, `password`) when needed and never logged or returned in
metadata; basic auth as the local registry (htpasswd) expects.
"""

from __future__ import annotations

import json
import ssl
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import certifi
import dagster as dg
import httpx
from botocore.exceptions import BotoCoreError, ClientError
from pydantic import Field

from shop_ops.resources.aws import AwsResource
from shop_ops.services.registry import RegistryServer

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
# The registry answers an OCI manifest only when the OCI type is accepted: ask for all four.
MANIFEST_ACCEPT = ", ".join((OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST))


class RegistryError(RuntimeError):
    """The registry refused or failed a request; the message names the repository and reference."""


@dataclass(frozen=True)
class Manifest:
    repository: str
    reference: str
    digest: str
    media_type: str
    body: bytes

    def json(self) -> dict:
        return json.loads(self.body)


def read_credentials(path: Path) -> tuple[str, str]:
    """(username, password) from a JSON file; the error never shows the file's content."""
    try:
        data = json.loads(path.read_text())
        return str(data["username"]), str(data["password"])
    except FileNotFoundError:
        raise RegistryError(f"registry credentials file {path} does not exist (start the registry first)") from None
    except (json.JSONDecodeError, KeyError, TypeError):
        raise RegistryError(f"registry credentials file {path} must be JSON with username and password") from None


@cache
def tls_context() -> ssl.SSLContext:
    """One verifying TLS context (httpx's default: certifi's roots) for every request of this process.

    httpx builds a new one per Client otherwise, ~80 ms each: most of a request to the local registry.
    """
    return ssl.create_default_context(cafile=certifi.where())


class RegistryClient:
    """One registry at `url` (http://127.0.0.1:5055 locally)."""

    def __init__(self, url: str, credentials_file: Path | None = None, timeout: float = 30) -> None:
        self.url = url.rstrip("/")
        self.credentials_file = credentials_file
        self.timeout = timeout

    @property
    def address(self) -> str:
        """host:port, as image references spell the registry."""
        return urlsplit(self.url).netloc

    @property
    def insecure(self) -> bool:
        """Plain HTTP (the local registry on loopback)."""
        return urlsplit(self.url).scheme == "http"

    def credentials(self) -> tuple[str, str] | None:
        return read_credentials(self.credentials_file) if self.credentials_file else None

    def image_ref(self, repository: str, tag: str) -> str:
        return f"{self.address}/{repository}:{tag}"

    def pinned_ref(self, repository: str, digest: str) -> str:
        return f"{self.address}/{repository}@{digest}"

    def _request(self, method: str, path: str, **kwargs: object) -> httpx.Response:
        auth = self.credentials()
        try:
            with httpx.Client(timeout=self.timeout, auth=auth, verify=tls_context()) as client:
                return client.request(method, f"{self.url}/v2/{path}", **kwargs)  # type: ignore[arg-type]
        except httpx.TransportError as exc:
            raise RegistryError(f"registry {self.url} does not answer: {exc}") from None

    @staticmethod
    def _fail(response: httpx.Response, what: str) -> RegistryError:
        detail = response.text[:300]
        if response.status_code == 401:
            detail = "unauthorized: check the credentials file"
        return RegistryError(f"{what}: HTTP {response.status_code} {detail}")

    def catalog(self) -> list[str]:
        """Every repository name (follows pagination)."""
        names: list[str] = []
        path = "_catalog?n=1000"
        while True:
            response = self._request("GET", path)
            if response.status_code != 200:
                raise self._fail(response, "catalog")
            names.extend(response.json().get("repositories") or [])
            link = response.headers.get("link", "")
            if "rel=" not in link:
                return names
            path = link.split("<", 1)[1].split(">", 1)[0].removeprefix("/v2/")

    def tags(self, repository: str) -> list[str]:
        """The tags of `repository`, sorted; [] when it does not exist."""
        response = self._request("GET", f"{repository}/tags/list")
        if response.status_code == 404:
            return []
        if response.status_code != 200:
            raise self._fail(response, f"tags of {repository}")
        return sorted(response.json().get("tags") or [])

    def manifest(self, repository: str, reference: str) -> Manifest | None:
        """The manifest of `reference` (tag or digest) as stored, or None when absent."""
        response = self._request("GET", f"{repository}/manifests/{reference}", headers={"Accept": MANIFEST_ACCEPT})
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise self._fail(response, f"manifest {repository}:{reference}")
        return Manifest(
            repository=repository,
            reference=reference,
            digest=response.headers["docker-content-digest"],
            media_type=response.headers.get("content-type", "").split(";")[0],
            body=response.content,
        )

    def manifest_digest(self, repository: str, reference: str) -> str | None:
        """sha256:... of `reference`, or None when absent (HEAD, both manifest formats accepted)."""
        response = self._request("HEAD", f"{repository}/manifests/{reference}", headers={"Accept": MANIFEST_ACCEPT})
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise self._fail(response, f"manifest {repository}:{reference}")
        return response.headers["docker-content-digest"]

    def add_tag(self, repository: str, reference: str, new_tag: str) -> str:
        """Point `new_tag` at the manifest of `reference` (PUT the same bytes); returns the digest."""
        manifest = self.manifest(repository, reference)
        if manifest is None:
            raise RegistryError(f"cannot tag {repository}:{reference} as {new_tag}: no such manifest")
        response = self._request(
            "PUT",
            f"{repository}/manifests/{new_tag}",
            content=manifest.body,
            headers={"Content-Type": manifest.media_type},
        )
        if response.status_code not in (200, 201):
            raise self._fail(response, f"tag {repository}:{new_tag}")
        digest = response.headers.get("docker-content-digest", manifest.digest)
        if digest != manifest.digest:
            raise RegistryError(f"{repository}:{new_tag} got digest {digest}, expected {manifest.digest}")
        return digest

    def delete_manifest(self, repository: str, digest: str) -> bool:
        """DELETE the manifest `digest` (and so every tag on it); False when it is already gone.

        The registry refuses while read-only (garbage collection) and when deletes are not enabled.
        """
        if not digest.startswith("sha256:"):
            raise RegistryError(
                f"delete {repository}:{digest}: manifests are deleted by digest (sha256:...), not by tag"
            )
        response = self._request("DELETE", f"{repository}/manifests/{digest}")
        if response.status_code == 404:
            return False
        if response.status_code != 202:
            raise self._fail(response, f"delete {repository}@{digest}")
        return True

    def tag_digests(self, repository: str) -> dict[str, str]:
        """tag -> manifest digest for every tag of `repository` (one HEAD per tag); {} when it does not exist."""
        digests = {}
        for tag in self.tags(repository):
            digest = self.manifest_digest(repository, tag)
            if digest is not None:  # deleted between the listing and the HEAD
                digests[tag] = digest
        return digests

    def image_config(self, repository: str, reference: str) -> dict:
        """The image configuration blob (User, Healthcheck, Labels, ...) of a single-image manifest."""
        manifest = self.manifest(repository, reference)
        if manifest is None:
            raise RegistryError(f"{repository}:{reference} does not exist")
        config = manifest.json().get("config") or {}
        response = self._request("GET", f"{repository}/blobs/{config.get('digest')}")
        if response.status_code != 200:
            raise self._fail(response, f"config blob of {repository}:{reference}")
        return response.json()


class EcrImages:
    """The shop's repositories in ECR through its API (a boto3 `ecr` client): what registry housekeeping reads and deletes.

    The same calls as `RegistryClient` offers for it. ECR deletes by digest with BatchDeleteImage and
    removes layers no image references by itself (no garbage collection here). Build order is the
    push time (`imagePushedAt`): ECR's API does not show the image configuration's creation time.
    """

    def __init__(self, ecr: Any, address: str) -> None:
        self.ecr = ecr
        self.address = address
        self._pushed: dict[tuple[str, str], str] = {}

    def _fail(self, exc: ClientError | BotoCoreError, what: str) -> RegistryError:
        if isinstance(exc, BotoCoreError):  # no answer: endpoint, credentials, network
            return RegistryError(f"{what}: ECR {self.address} not reachable: {exc}")
        error = exc.response.get("Error", {})
        return RegistryError(f"{what} in ECR {self.address}: {error.get('Code')} {error.get('Message', '')}".strip())

    @property
    def url(self) -> str:
        return f"https://{self.address}"

    def tags(self, repository: str) -> list[str]:
        """The tags of `repository`, sorted; [] when it does not exist (what the push sensor reads)."""
        return sorted(self.tag_digests(repository))

    def tag_digests(self, repository: str) -> dict[str, str]:
        """tag -> image digest for every tag of `repository`; {} when it does not exist."""
        digests = {}
        try:
            for page in self.ecr.get_paginator("describe_images").paginate(
                repositoryName=repository, filter={"tagStatus": "TAGGED"}
            ):
                for image in page["imageDetails"]:
                    self._pushed[(repository, image["imageDigest"])] = image["imagePushedAt"].isoformat()
                    digests.update({tag: image["imageDigest"] for tag in image.get("imageTags") or ()})
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "RepositoryNotFoundException":
                return {}
            raise self._fail(exc, f"tags of {repository}") from None
        except BotoCoreError as exc:
            raise self._fail(exc, f"tags of {repository}") from None
        return digests

    def _describe(self, repository: str, image_id: dict[str, str]) -> dict | None:
        try:
            return self.ecr.describe_images(repositoryName=repository, imageIds=[image_id])["imageDetails"][0]
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("ImageNotFoundException", "RepositoryNotFoundException"):
                return None
            raise self._fail(exc, f"image {repository} {image_id}") from None
        except BotoCoreError as exc:
            raise self._fail(exc, f"image {repository} {image_id}") from None

    def manifest_digest(self, repository: str, reference: str) -> str | None:
        key = {"imageDigest": reference} if reference.startswith("sha256:") else {"imageTag": reference}
        image = self._describe(repository, key)
        return image["imageDigest"] if image else None

    def image_config(self, repository: str, reference: str) -> dict:
        """Only `created`: the push time (ECR's API does not show the configuration)."""
        pushed = self._pushed.get((repository, reference))
        if pushed is None:
            image = self._describe(repository, {"imageDigest": reference})
            if image is None:
                raise RegistryError(f"{repository}@{reference} does not exist in ECR {self.address}")
            pushed = image["imagePushedAt"].isoformat()
        return {"created": pushed}

    def delete_manifest(self, repository: str, digest: str) -> bool:
        """BatchDeleteImage by digest (its tags go with it); False when it is already gone."""
        if not digest.startswith("sha256:"):
            raise RegistryError(f"delete {repository}:{digest}: images are deleted by digest (sha256:...), not by tag")
        try:
            answer = self.ecr.batch_delete_image(repositoryName=repository, imageIds=[{"imageDigest": digest}])
        except (ClientError, BotoCoreError) as exc:
            raise self._fail(exc, f"delete {repository}@{digest}") from None
        for failure in answer.get("failures") or []:
            if failure.get("failureCode") == "ImageNotFound":
                return False
            raise RegistryError(
                f"delete {repository}@{digest} in ECR: {failure.get('failureCode')} {failure.get('failureReason')}"
            )
        return True


class RegistryResource(dg.ConfigurableResource):
    """The registry images are pushed to, and the shop's two repositories in it; credentials from a JSON file path."""

    url: str
    credentials_file: str | None = None
    timeout_seconds: float = 30
    backend_repository: str = "shop/backend"
    frontend_repository: str = "shop/frontend"

    local_folder: str | None = Field(
        default=None,
        description="the local registry's folder (config.yml, pid file, storage) for garbage collection; "
        "None: a registry that collects its own garbage (ECR)",
    )

    aws: AwsResource | None = Field(
        default=None,
        description="ECR's API (aws profile): the push sensor lists and registry_retention deletes through it",
    )

    def client(self) -> RegistryClient:
        path = Path(self.credentials_file) if self.credentials_file else None
        return RegistryClient(self.url, path, timeout=self.timeout_seconds)

    def images_api(self) -> RegistryClient | EcrImages:
        """What the push sensor lists and registry_retention deletes through: ECR's API on aws, else the registry's."""
        if self.aws is not None:
            return EcrImages(self.aws.client("ecr"), self.client().address)
        return self.client()

    def server(self) -> RegistryServer | None:
        """The local registry process (restarted read-only for garbage collection), None for a hosted registry."""
        return RegistryServer.existing(Path(self.local_folder)) if self.local_folder else None
