"""The Docker Engine API (Docker or podman's service) through docker-py: build, push, inspect, run containers.

`DockerEngine` is the plain client (usable without Dagster: the local environment and the
deploy functions call it); `ContainersResource` is its Dagster resource. Every container is
run with host networking (services bind 127.0.0.1; podman's bridge cannot reach loopback).
"""

from __future__ import annotations

import io
import os
import tarfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import Any

import dagster as dg
import docker
import httpx
import requests
from docker.auth import encode_header
from docker.errors import APIError, DockerException, ImageNotFound, NotFound

MANAGED_LABEL = "io.shop-ops.managed"
DOCKER_SOCKET = Path("/var/run/docker.sock")
PODMAN_SOCKET = "podman/podman.sock"  # under a state folder: where `shop-ops local up` serves podman's API


class ContainerError(RuntimeError):
    """A build, push or container run failed; the message says which and shows the last log lines."""


@dataclass(frozen=True)
class BuildResult:
    image_id: str
    seconds: float
    log: list[str]


@dataclass(frozen=True)
class ImageFacts:
    """What an image is, as the engine reports it."""

    image_id: str
    size_mb: float
    layers: int
    user: str
    healthcheck: bool
    labels: dict[str, str]

    @property
    def runs_as_root(self) -> bool:
        """USER unset, 0 or root (with or without a group) runs as root."""
        return self.user.split(":", 1)[0] in ("", "0", "root")


@dataclass(frozen=True)
class LocalImage:
    """An image in the engine's store: its names (`repo:tag`), registry digests (`repo@sha256:...`), build time."""

    image_id: str
    tags: tuple[str, ...]
    digests: tuple[str, ...]
    created: datetime | None


@dataclass(frozen=True)
class RunResult:
    exit_code: int
    logs: str  # stdout and stderr
    stdout: str
    seconds: float

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


@dataclass(frozen=True)
class ServiceContainer:
    id: str
    name: str
    image: str
    status: str
    labels: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ContainerStats:
    """One reading of a running container's cgroup counters, as the engine's stats endpoint answers.

    CPU is a cumulative counter: utilization is the difference between two readings over the
    difference of their `time`. podman 4.3's `system_cpu_usage` is not Docker's (host CPU time
    of all cores: about 2 s per second on 2 cores): it grew ~0.05 s/s idle and ~0.5 s/s with
    one container busy, as measured here; it is kept as reported but not for dividing by.
    """

    container_id: str
    time: datetime  # UTC: when the engine read the counters (its `read`), else when the answer came
    cpu_total_ns: int  # cumulative CPU time of all the container's processes
    system_cpu_ns: int | None  # the engine's `system_cpu_usage`, as reported (see above)
    online_cpus: int  # cores the container may run on (0 if not reported)
    memory_bytes: int  # cgroup memory usage; podman 4.3 on cgroup v1 counts the page cache too
    memory_limit_bytes: int | None  # None: no limit (the engine reports the host's memory then)


# Where the shop's images write at run time, as tmpfs mounts of a read-only container: the backend's
# working folder and Prometheus's multiprocess folder (/tmp, the image's WORKDIR), the storefront's nginx
# config, pid and temp files (/tmp/nginx, frontend/nginx/entrypoint.sh). Nothing from there is executed.
SHOP_TMPFS = {"/tmp": "rw,noexec,nosuid,nodev,size=64m"}


@dataclass(frozen=True)
class Hardening:
    """How a container is confined: a read-only root filesystem with tmpfs mounts where it writes, no
    capabilities, no privilege gain (setuid), and memory and CPU bounds (None: unbounded).

    The memory bound is also the swap bound (MemorySwap = Memory): a container over it is killed, not swapped.
    """

    read_only: bool = True
    tmpfs: Mapping[str, str] = field(default_factory=lambda: dict(SHOP_TMPFS))
    memory_mb: int | None = None
    cpus: float | None = None

    def __post_init__(self) -> None:
        if self.memory_mb is not None and self.memory_mb < 16:
            raise ContainerError(f"container memory limit {self.memory_mb} MB is too small: give at least 16 MB")
        if self.cpus is not None and not self.cpus > 0:
            raise ContainerError(f"container CPU limit {self.cpus!r}: give a positive number of CPUs (e.g. 1.0)")

    def host_config(self) -> dict[str, Any]:
        """`create_host_config` arguments (docker-py) for these bounds."""
        args: dict[str, Any] = {
            "read_only": self.read_only,
            "tmpfs": dict(self.tmpfs),
            "cap_drop": ["ALL"],
            "security_opt": ["no-new-privileges"],
        }
        if self.memory_mb is not None:
            args["mem_limit"] = args["memswap_limit"] = f"{self.memory_mb}m"
        if self.cpus is not None:
            args["nano_cpus"] = round(self.cpus * 1e9)
        return args


@dataclass(frozen=True)
class RegistryAuth:
    """Credentials for one push; never logged (no repr of the password)."""

    username: str
    password: str = field(repr=False)
    server: str = ""


def _auth_header(auth: RegistryAuth) -> str:
    return encode_header({"username": auth.username, "password": auth.password, "serveraddress": auth.server}).decode()


def _tail(lines: Sequence[str], n: int = 20) -> str:
    return "\n".join(line.rstrip() for line in lines[-n:])


def _engine_time(value: object) -> datetime | None:
    """An engine timestamp (RFC 3339, nanoseconds) as UTC, truncated to microseconds; None if unset or Go's zero time."""
    text = str(value or "")
    if not text or text.startswith("0001-01-01"):
        return None
    try:
        parsed = datetime.fromisoformat(text)  # 3.11+: `Z` and 9 fraction digits
    except ValueError:
        return None
    return parsed.astimezone(UTC) if parsed.tzinfo else parsed.replace(tzinfo=UTC)


class DockerEngine:
    """docker-py over `docker_host` (unix:///...). Plain and typed; safe to share in one thread."""

    def __init__(self, docker_host: str, timeout: float = 600) -> None:
        self.docker_host = docker_host
        self.timeout = timeout

    @cached_property
    def client(self) -> docker.DockerClient:
        try:
            return docker.DockerClient(base_url=self.docker_host, timeout=int(self.timeout))
        except DockerException as exc:
            raise ContainerError(
                f"the Docker API at {self.docker_host} does not answer ({exc}); start it with `shop-ops local up`"
            ) from None

    @cached_property
    def is_podman(self) -> bool:
        components = self.client.version().get("Components") or []
        return any("podman" in str(c.get("Name", "")).lower() for c in components)

    # ------------------------------------------------------------------ images
    def build(
        self,
        context: Path,
        tag: str,
        build_args: Mapping[str, str] | None = None,
        dockerfile: str = "Dockerfile",
        network_mode: str = "none",
        on_line: Callable[[str], None] | None = None,
        use_cache: bool = False,
    ) -> BuildResult:
        """Build `context` (its .dockerignore applies) into `tag`; no pulls, no network by default.

        No layer cache by default: podman 4.3's build cache reuses a LABEL step whose ARG
        value changed (an image labelled with another commit), as measured here.
        """
        started = time.monotonic()
        log: list[str] = []
        image_id = ""
        try:
            stream = self.client.api.build(
                path=str(context),
                tag=tag,
                dockerfile=dockerfile,
                buildargs=dict(build_args or {}),
                network_mode=network_mode,
                rm=True,
                forcerm=True,
                nocache=not use_cache,
                pull=False,
                decode=True,
            )
            for chunk in stream:
                if "error" in chunk or "errorDetail" in chunk:
                    message = chunk.get("error") or chunk.get("errorDetail", {}).get("message", "")
                    raise ContainerError(f"build of {tag} from {context} failed: {message}\n{_tail(log)}")
                text = chunk.get("stream") or chunk.get("status") or ""
                image_id = chunk.get("aux", {}).get("ID", image_id)
                for line in text.splitlines():
                    if line.strip():
                        log.append(line)
                        if on_line:
                            on_line(line)
        except APIError as exc:
            raise ContainerError(f"build of {tag} from {context} failed: {exc.explanation}\n{_tail(log)}") from None
        try:
            image_id = image_id or self.client.images.get(tag).id
        except ImageNotFound:
            raise ContainerError(f"build of {tag} reported success but no image is tagged\n{_tail(log)}") from None
        return BuildResult(image_id=image_id, seconds=round(time.monotonic() - started, 2), log=log)

    def tag(self, image: str, ref: str) -> None:
        """Give `image` (id or ref) the name `ref` (repository:tag)."""
        repository, _, tag = ref.rpartition(":")
        if not repository or "/" in tag:
            raise ValueError(f"{ref!r} is not repository:tag")
        if not self.client.api.tag(image, repository, tag):
            raise ContainerError(f"could not tag {image} as {ref}")

    def push(self, ref: str, auth: RegistryAuth | None = None, insecure: bool = False) -> str:
        """Push `ref` (repository:tag); returns the manifest digest the registry stored.

        `insecure`: plain-HTTP registry. podman's Docker API takes `tlsVerify=false` per
        request (docker-py has no argument for it); a Docker engine already treats
        127.0.0.0/8 registries as insecure and ignores the parameter.
        """
        repository, _, tag = ref.rpartition(":")
        headers = {}
        if auth is not None:
            headers["X-Registry-Auth"] = _auth_header(auth)
        params = {"tag": tag}
        if insecure:
            params["tlsVerify"] = "false"
        api = self.client.api
        digest = ""
        log: list[str] = []
        response = api._post(api._url("/images/{0}/push", repository), params=params, headers=headers, stream=True)
        api._raise_for_status(response)
        for chunk in api._stream_helper(response, decode=True):
            if "error" in chunk or "errorDetail" in chunk:
                message = chunk.get("error") or chunk.get("errorDetail", {}).get("message", "")
                raise ContainerError(f"push of {ref} failed: {message}")
            digest = chunk.get("aux", {}).get("Digest", digest)
            status = str(chunk.get("status", ""))
            log.append(status)
            if not digest and "digest: sha256:" in status:
                digest = status.split("digest: ", 1)[1].split()[0]
        if not digest.startswith("sha256:"):
            raise ContainerError(f"push of {ref} reported no digest:\n{_tail(log)}")
        return digest

    def pull(self, ref: str, auth: RegistryAuth | None = None, insecure: bool = False) -> str:
        """Pull `ref` (tag or @digest); returns the image id. podman: its own API, which takes tlsVerify."""
        api = self.client.api
        headers = {"X-Registry-Auth": _auth_header(auth)} if auth else {}
        if self.is_podman:
            params = {"reference": ref, "quiet": "true", **({"tlsVerify": "false"} if insecure else {})}
            response = api._post(
                f"{api.base_url}/v4.0.0/libpod/images/pull", params=params, headers=headers, stream=True
            )
        else:
            response = api._post(api._url("/images/create"), params={"fromImage": ref}, headers=headers, stream=True)
        api._raise_for_status(response)
        for chunk in api._stream_helper(response, decode=True):
            if chunk.get("error") or chunk.get("errorDetail"):
                message = chunk.get("error") or chunk.get("errorDetail", {}).get("message", "")
                raise ContainerError(f"pull of {ref} failed: {message}")
        return self.inspect(ref).image_id

    def ensure_image(self, ref: str, auth: RegistryAuth | None = None, insecure: bool = False) -> None:
        """Pull `ref` unless the engine has it (a digest reference names the registry's manifest digest)."""
        if not self.image_exists(ref):
            self.pull(ref, auth=auth, insecure=insecure)

    def inspect(self, image: str) -> ImageFacts:
        """Size, layers, user, healthcheck and labels of a local image (id or ref)."""
        try:
            attrs = self.client.api.inspect_image(image)
        except ImageNotFound:
            raise ContainerError(f"image {image} is not in the engine's storage") from None
        config = attrs.get("Config") or {}
        health = config.get("Healthcheck")
        if health is None and self.is_podman:
            # podman's Docker-compatible inspect leaves Config.Healthcheck out; its own API has it.
            api = self.client.api
            native = api._result(api.get(f"{api.base_url}/v4.0.0/libpod/images/{attrs['Id']}/json"), json=True)
            health = native.get("Healthcheck") or native.get("HealthCheck")
        test = (health or {}).get("Test") or []
        return ImageFacts(
            image_id=attrs["Id"],
            size_mb=round(int(attrs.get("Size") or 0) / 1_000_000, 1),
            layers=len((attrs.get("RootFS") or {}).get("Layers") or []),
            user=str(config.get("User") or ""),
            healthcheck=bool(test) and test[0] != "NONE",
            labels=dict(config.get("Labels") or {}),
        )

    def image_exists(self, image: str) -> bool:
        try:
            self.client.api.inspect_image(image)
            return True
        except ImageNotFound:
            return False

    def remove_image(self, image: str) -> bool:
        """Remove a local image name or full id (content stays while other names use it); False if absent or in use."""
        try:
            self.client.api.remove_image(image)
            return True
        except (ImageNotFound, NotFound):
            return False
        except APIError as exc:
            if exc.status_code == 409:  # a container uses it
                return False
            raise

    def list_images(self) -> list[LocalImage]:
        """Every image in the engine's store (untagged ones too)."""
        images = []
        for item in self.client.api.images(all=False):
            created = item.get("Created")
            images.append(
                LocalImage(
                    image_id=_image_id(str(item["Id"])),
                    tags=tuple(t for t in item.get("RepoTags") or () if t and "<none>" not in t),
                    digests=tuple(d for d in item.get("RepoDigests") or () if d and "<none>" not in d),
                    created=datetime.fromtimestamp(created, UTC) if isinstance(created, int | float) else None,
                )
            )
        return images

    def image_ids_in_use(self) -> set[str]:
        """The image ids of every container, running or stopped (their images must stay)."""
        return {_image_id(str(c.get("ImageID") or "")) for c in self.client.api.containers(all=True)} - {""}

    # ------------------------------------------------------------------ containers
    def _host_config(
        self, mounts: Mapping[str | Path, str] | None, hardening: Hardening | None = None
    ) -> dict[str, Any]:
        binds = {str(Path(src).resolve()): {"bind": dst, "mode": "ro"} for src, dst in (mounts or {}).items()}
        confined = hardening.host_config() if hardening is not None else {}
        return self.client.api.create_host_config(network_mode="host", binds=binds, **confined)

    def read_file(self, image: str, path: str) -> bytes | None:
        """One file of `image` (from a created, never started container; the container is removed); None when absent."""
        api = self.client.api
        cid = api.create_container(image, labels={MANAGED_LABEL: "true", "io.shop-ops.role": "read-file"})["Id"]
        try:
            try:
                stream, _ = api.get_archive(cid, path)
            except NotFound:
                return None
            with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as archive:
                member = archive.next()
                extracted = archive.extractfile(member) if member is not None and member.isfile() else None
                return extracted.read() if extracted is not None else None
        finally:
            try:
                api.remove_container(cid, force=True)
            except NotFound:
                pass

    def run_once(
        self,
        image: str,
        command: Sequence[str] | None = None,
        env: Mapping[str, str] | None = None,
        mounts: Mapping[str | Path, str] | None = None,
        timeout: float = 300,
        entrypoint: Sequence[str] | None = None,
        user: str | None = None,
        labels: Mapping[str, str] | None = None,
        hardening: Hardening | None = None,
    ) -> RunResult:
        """Run a one-off container (host network, read-only `mounts` host path -> container path).

        Waits up to `timeout` seconds (then kills it: ContainerError); the container is always removed.
        `hardening`: confine it (read-only root, no capabilities, limits); None: the engine's defaults.
        """
        api = self.client.api
        started = time.monotonic()
        created = api.create_container(
            image,
            command=list(command) if command is not None else None,
            entrypoint=list(entrypoint) if entrypoint is not None else None,
            environment=dict(env or {}),
            user=user,
            labels={MANAGED_LABEL: "true", "io.shop-ops.role": "one-off", **(labels or {})},
            host_config=self._host_config(mounts, hardening),
        )
        cid = created["Id"]
        try:
            api.start(cid)
            try:
                status = api.wait(cid, timeout=timeout)
            except (requests.exceptions.ConnectionError, requests.exceptions.Timeout):
                api.kill(cid)
                logs = api.logs(cid, stdout=True, stderr=True).decode(errors="replace")
                raise ContainerError(
                    f"{image} {' '.join(command or [])} did not finish in {timeout:.0f} s; killed\n"
                    f"{_tail(logs.splitlines())}"
                ) from None
            return RunResult(
                exit_code=int(status.get("StatusCode", -1)),
                logs=api.logs(cid, stdout=True, stderr=True).decode(errors="replace"),
                stdout=api.logs(cid, stdout=True, stderr=False).decode(errors="replace"),
                seconds=round(time.monotonic() - started, 2),
            )
        finally:
            try:
                api.remove_container(cid, force=True)
            except NotFound:
                pass

    def start_service(
        self,
        name: str,
        image: str,
        command: Sequence[str] | None = None,
        env: Mapping[str, str] | None = None,
        labels: Mapping[str, str] | None = None,
        stop_timeout: int = 10,
        mounts: Mapping[str | Path, str] | None = None,
        replace: bool = False,
        log_path: Path | None = None,
        log_max_size: str | None = None,
        hardening: Hardening | None = None,
    ) -> ServiceContainer:
        """Start a long-running container `name` on the host network. `replace` removes one of that name first.

        `log_path`: the engine writes the container's output there (k8s-file: `<time> stdout|stderr F <line>`),
        outside the container's own folder, so it outlives the container (the central log collector reads it).
        podman 4.3's Docker API takes `HostConfig.LogConfig {"Type": "k8s-file", "Config": {"path": ...}}`
        (its folder must exist: podman creates the container, then fails to start it). `log_max_size`
        (e.g. "20m"): the engine truncates the file when it grows past that (podman's conmon does it itself;
        the file is never moved, so no logrotate is needed for it). `hardening`: confine the container
        (read-only root with tmpfs where it writes, no capabilities, no-new-privileges, memory and CPU limits).
        """
        api = self.client.api
        if replace:
            self.stop_service(name, timeout=stop_timeout)
        host_config = self._host_config(mounts, hardening)
        if log_path is not None:
            log_path.parent.mkdir(parents=True, exist_ok=True)
            config = {"path": str(log_path.resolve()), **({"max-size": log_max_size} if log_max_size else {})}
            host_config["LogConfig"] = {"Type": "k8s-file", "Config": config}
        try:
            created = api.create_container(
                image,
                command=list(command) if command is not None else None,
                name=name,
                environment=dict(env or {}),
                labels={MANAGED_LABEL: "true", **(labels or {})},
                stop_timeout=stop_timeout,
                host_config=host_config,
            )
        except APIError as exc:
            raise ContainerError(f"cannot create container {name} from {image}: {exc.explanation}") from None
        api.start(created["Id"])
        return self._service(created["Id"])

    def stop_service(self, name: str, timeout: int | None = None) -> bool:
        """Stop (SIGTERM, then SIGKILL after `timeout` or the container's stop_timeout) and remove; False if absent."""
        api = self.client.api
        try:
            if timeout is None:
                api.stop(name)
            else:
                api.stop(name, timeout=timeout)
        except NotFound:
            return False
        except APIError as exc:
            if exc.status_code != 304:  # already stopped
                raise
        try:
            api.remove_container(name, force=True)
        except NotFound:
            pass
        return True

    def list_services(
        self, labels: Mapping[str, str] | None = None, include_stopped: bool = False
    ) -> list[ServiceContainer]:
        """Containers carrying every label in `labels` (running ones unless `include_stopped`)."""
        filters = {"label": [f"{k}={v}" for k, v in (labels or {MANAGED_LABEL: "true"}).items()]}
        found = self.client.api.containers(all=include_stopped, filters=filters)
        services = []
        for c in found:
            try:
                services.append(self._service(c["Id"]))
            except NotFound:  # removed between the listing and its inspect
                continue
        return services

    def stats(self, name_or_id: str, timeout: float = 10) -> ContainerStats | None:
        """One stats reading of a running container; None if it is gone, not yet started or stopped.

        `stream=false&one-shot=true`: a Docker engine otherwise waits a second to fill
        `precpu_stats`; podman 4.3 answers at once either way (2-8 ms here, `precpu_stats` left
        empty) and answers 200 with an empty body for a container that does not run.
        ContainerError if the engine fails or does not answer within `timeout` seconds.
        """
        api = self.client.api
        try:
            response = api._get(
                api._url("/containers/{0}/stats", name_or_id),
                params={"stream": "false", "one-shot": "true"},
                timeout=timeout,
            )
            if response.status_code == 404:
                return None
            api._raise_for_status(response)
            data = response.json() if response.content.strip() else {}
        except NotFound:
            return None
        except APIError as exc:
            if self._gone_or_stopped(name_or_id):
                return None  # stopped or removed while being read (podman: "cgroup deleted", "state improper")
            raise ContainerError(f"stats of {name_or_id}: {exc.explanation or exc}") from None
        except (requests.exceptions.RequestException, ValueError) as exc:
            if self._gone_or_stopped(name_or_id):
                return None
            raise ContainerError(f"stats of {name_or_id}: {exc}") from None
        cpu = data.get("cpu_stats") or {}
        usage = cpu.get("cpu_usage") or {}
        read = _engine_time(data.get("read"))
        if "total_usage" not in usage or (read is None and "read" in data):
            return None  # empty answer (podman) or never read (a Docker engine's stopped container)
        memory = data.get("memory_stats") or {}
        limit = int(memory.get("limit") or 0)
        system = cpu.get("system_cpu_usage")
        return ContainerStats(
            container_id=str(data.get("Id") or data.get("id") or ""),
            time=read or datetime.now(UTC),
            cpu_total_ns=int(usage["total_usage"]),
            system_cpu_ns=int(system) if system is not None else None,
            online_cpus=int(cpu.get("online_cpus") or len(usage.get("percpu_usage") or [])),
            memory_bytes=int(memory.get("usage") or 0),
            memory_limit_bytes=limit if 0 < limit < self._host_memory_bytes else None,
        )

    @cached_property
    def _host_memory_bytes(self) -> int:
        """The engine host's memory (/info MemTotal): the limit engines report for an unlimited container."""
        try:
            return int(self.client.info().get("MemTotal") or 0) or 2**63
        except (APIError, requests.exceptions.RequestException):
            return 2**63  # unknown: only a limit above any real memory counts as none

    def running(self, name: str) -> bool:
        """The container `name` exists and runs."""
        try:
            return self._service(name).status == "running"
        except NotFound:
            return False

    def wait_answering(self, names: Sequence[str], urls: Sequence[str], timeout: float = 90) -> None:
        """Poll each URL until it answers 200 while the containers `names` keep running (podman 4.3 runs no
        healthchecks); ContainerError with the log's end if one stops, or naming the URL when time runs out."""
        pending = list(urls)
        deadline = time.monotonic() + timeout
        while pending:
            try:
                if httpx.get(pending[0], timeout=2).status_code == 200:
                    pending.pop(0)
                    continue
            except httpx.TransportError:
                pass
            for name in names:
                if not self.running(name):
                    raise ContainerError(f"{name} stopped before it was ready:\n{self.logs(name, tail=40)}")
            if time.monotonic() > deadline:
                raise ContainerError(f"{pending[0]} did not answer 200 within {timeout:.0f}s")
            time.sleep(0.25)

    def logs(self, name: str, tail: int = 100) -> str:
        return self.client.api.logs(name, stdout=True, stderr=True, tail=tail).decode(errors="replace")

    def _gone_or_stopped(self, cid: str) -> bool:
        """The engine says the container no longer exists or no longer runs (False when it cannot say)."""
        try:
            return self._service(cid).status != "running"
        except NotFound:
            return True
        except (APIError, requests.exceptions.RequestException):
            return False

    def _service(self, cid: str) -> ServiceContainer:
        info = self.client.api.inspect_container(cid)
        return ServiceContainer(
            id=info["Id"],
            name=str(info.get("Name", "")).lstrip("/"),
            image=str((info.get("Config") or {}).get("Image", "")),
            status=str((info.get("State") or {}).get("Status", "")),
            labels=dict((info.get("Config") or {}).get("Labels") or {}),
        )

    def close(self) -> None:
        if "client" in self.__dict__:
            self.client.close()
            del self.__dict__["client"]


def _image_id(value: str) -> str:
    """`sha256:<hex>` whether the engine answered with the prefix (Docker) or without (some podman answers)."""
    return value if not value or value.startswith("sha256:") else f"sha256:{value}"


def ping(docker_host: str) -> bool:
    """The Docker API at `docker_host` (unix://PATH) answers /_ping."""
    if not docker_host.startswith("unix://"):
        raise ContainerError(f"only unix:// Docker hosts are supported here, got {docker_host}")
    try:
        transport = httpx.HTTPTransport(uds=docker_host.removeprefix("unix://"))
        with httpx.Client(transport=transport, timeout=2) as client:
            return client.get("http://docker/_ping").status_code == 200
    except (httpx.TransportError, OSError):
        return False


def podman_socket(state_dir: Path) -> Path:
    """The socket of the podman API service that serves the storage under `state_dir`."""
    return state_dir / PODMAN_SOCKET


def existing_docker(state_dir: Path) -> str | None:
    """unix:// URL of a Docker engine (DOCKER_HOST or /var/run/docker.sock) that answers now, if any."""
    host = os.environ.get("DOCKER_HOST") or (f"unix://{DOCKER_SOCKET}" if DOCKER_SOCKET.exists() else "")
    if host and host != f"unix://{podman_socket(state_dir)}" and ping(host):
        return host
    return None


def docker_host_for(state_dir: Path) -> str:
    """The Docker API to use: a Docker engine that answers, else podman's service over `state_dir`'s storage."""
    return existing_docker(state_dir) or f"unix://{podman_socket(state_dir)}"


class ContainersResource(dg.ConfigurableResource):
    """The Docker Engine API used to build, push and run the shop's images."""

    docker_host: str
    timeout_seconds: float = 600

    def engine(self) -> DockerEngine:
        return DockerEngine(self.docker_host, timeout=self.timeout_seconds)


# The shop containers' log files (start_service's `log_path`), named so the central log collector
# (shop_ops/observability/logs.py) reads slot and release back from the name with CONTAINER_LOG_REGEX.
CONTAINER_LOG_REGEX = "/([^/_]+)_([^/_]+)_([^/]+)[.]log$"  # POSIX ERE: service, slot, release


def container_log_path(folder: Path, environment: str, service: str, slot: str, release: str) -> Path:
    """Where a shop container of `environment` writes its log: `<folder>/<environment>/<service>_<slot>_<release>.log`."""
    for label, value in (("environment", environment), ("service", service), ("slot", slot), ("release", release)):
        if not value or "/" in value or value.startswith(".") or (label != "release" and "_" in value):
            raise ContainerError(
                f"container log name: {label} {value!r} must be a plain name"
                + ("" if label == "release" else " without '_'")
            )
    return folder / environment / f"{service}_{slot}_{release}.log"
