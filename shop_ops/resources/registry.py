"""The image registry's OCI distribution HTTP API (httpx): catalog, tags, manifest digests, re-tagging.

`RegistryClient` is the plain client; `RegistryResource` its Dagster resource. Credentials are
read from a JSON file (`username`, `password`) when needed and never logged or returned in
metadata; basic auth as the local registry (htpasswd) expects.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import dagster as dg
import httpx

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
            with httpx.Client(timeout=self.timeout, auth=auth) as client:
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


class RegistryResource(dg.ConfigurableResource):
    """The registry images are pushed to, and the shop's two repositories in it; credentials from a JSON file path."""

    url: str
    credentials_file: str | None = None
    timeout_seconds: float = 30
    backend_repository: str = "shop/backend"
    frontend_repository: str = "shop/frontend"

    def client(self) -> RegistryClient:
        path = Path(self.credentials_file) if self.credentials_file else None
        return RegistryClient(self.url, path, timeout=self.timeout_seconds)
