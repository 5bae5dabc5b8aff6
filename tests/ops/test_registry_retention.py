"""registry_retention on a real registry: keeps what serves, the ledger's releases and the last builds, frees the rest.

Images are pushed as raw blobs and OCI manifests through the registry's API (fast and real: the
registry stores and garbage-collects them like any push). The registry is this module's own
(garbage collection restarts it), the ledger a real SQLite one.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from shop_ops.assets.retention import build_registry_retention_job
from shop_ops.release.flow import DeployRefused
from shop_ops.release.retention import (
    Decision,
    Keeps,
    RetentionDeps,
    RetentionError,
    StoredImage,
    housekeep,
    plan,
    prune_local_images,
)
from shop_ops.release.targets import EcsTarget, ReleaseTarget
from shop_ops.resources.containers import ContainersResource, DockerEngine
from shop_ops.resources.k6 import K6Resource
from shop_ops.resources.ledger import LedgerError, LedgerResource, ReleaseLedger
from shop_ops.resources.registry import OCI_MANIFEST, EcrImages, RegistryClient, RegistryResource, tls_context
from shop_ops.services.processes import free_port
from shop_ops.services.registry import RegistryServer, folder_bytes

CONFIG_TYPE = "application/vnd.oci.image.config.v1+json"
LAYER_TYPE = "application/vnd.oci.image.layer.v1.tar+gzip"
LAYER_BYTES = 256 * 1024
T0 = datetime(2026, 11, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def server() -> Iterator[RegistryServer]:
    registry = RegistryServer(Path(tempfile.mkdtemp(prefix="shop-ops-test-retention-")), free_port())
    registry.start()
    yield registry
    registry.stop()
    shutil.rmtree(registry.datadir, ignore_errors=True)


@pytest.fixture(scope="module")
def client(server: RegistryServer) -> RegistryClient:
    return RegistryClient(server.url, server.credentials_file)


def _sha(data: bytes) -> str:
    return f"sha256:{hashlib.sha256(data).hexdigest()}"


def push_blob(server: RegistryServer, repository: str, data: bytes) -> tuple[str, httpx.Response]:
    """Monolithic upload (POST, then PUT with the digest); returns the digest and the final answer."""
    digest = _sha(data)
    with httpx.Client(base_url=server.url, auth=server.credentials(), timeout=10, verify=tls_context()) as http:
        started = http.post(f"/v2/{repository}/blobs/uploads/")
        if started.status_code != 202:
            return digest, started
        location = started.headers["location"]  # keeps its _state query: add the digest to it, not replace it
        separator = "&" if "?" in location else "?"
        done = http.put(f"{location}{separator}digest={digest}", content=data,
                        headers={"Content-Type": "application/octet-stream"})  # fmt: skip
    return digest, done


def push_image(server: RegistryServer, repository: str, tags: list[str], created: datetime, seed: str) -> str:
    """A tiny image: one shared base layer, one layer of its own (LAYER_BYTES), a config with `created`."""
    base = b"base layer shared by every image" * 100
    own = hashlib.shake_256(seed.encode()).digest(LAYER_BYTES)
    pushed = [push_blob(server, repository, data) for data in (base, own)]
    assert all(answer.status_code == 201 for _, answer in pushed), [answer.text for _, answer in pushed]
    layers = [digest for digest, _ in pushed]
    config = json.dumps({
        "architecture": "amd64", "os": "linux", "created": created.isoformat().replace("+00:00", "Z"),
        "config": {"Labels": {"io.shop-ops.test": seed}},
        "rootfs": {"type": "layers", "diff_ids": layers},
    }).encode()  # fmt: skip
    config_digest, answer = push_blob(server, repository, config)
    assert answer.status_code == 201, answer.text
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": CONFIG_TYPE, "digest": config_digest, "size": len(config)},
        "layers": [{"mediaType": LAYER_TYPE, "digest": d, "size": len(x)} for d, x in zip(layers, (base, own), strict=True)],
    }).encode()  # fmt: skip
    with httpx.Client(base_url=server.url, auth=server.credentials(), timeout=10, verify=tls_context()) as http:
        for tag in tags:
            put = http.put(
                f"/v2/{repository}/manifests/{tag}", content=manifest, headers={"Content-Type": OCI_MANIFEST}
            )
            assert put.status_code == 201, put.text
    return _sha(manifest)


def pullable(server: RegistryServer, repository: str, digest: str) -> bool:
    """The manifest and every blob it names answer 200 (what a pull fetches)."""
    with httpx.Client(base_url=server.url, auth=server.credentials(), timeout=10, verify=tls_context()) as http:
        answer = http.get(f"/v2/{repository}/manifests/{digest}", headers={"Accept": OCI_MANIFEST})
        if answer.status_code != 200:
            return False
        body = answer.json()
        blobs = [body["config"]["digest"], *(layer["digest"] for layer in body["layers"])]
        return all(http.get(f"/v2/{repository}/blobs/{blob}").status_code == 200 for blob in blobs)


def seed(server: RegistryServer, prefix: str) -> dict[str, dict[str, str]]:
    """Six builds per repository; 0.1.0, 0.2.0, 0.3.0 released, 0.4.0 tagged but not deployed yet."""
    builds = {
        "b1": ["0.1.0-c1", "0.1.0"],
        "b2": ["0.2.0-c2", "0.2.0"],
        "b3": ["0.2.1-c3"],
        "b4": ["0.3.0-c4", "0.3.0"],
        "b5": ["0.3.1-c5"],
        "b6": ["0.3.2-c6", "0.4.0"],
    }
    digests: dict[str, dict[str, str]] = {}
    for role in ("backend", "frontend"):
        digests[role] = {
            name: push_image(server, f"{prefix}/{role}", tags, T0 + timedelta(hours=n), f"{prefix}-{role}-{name}")
            for n, (name, tags) in enumerate(builds.items())
        }
    return digests


def record(ledger: ReleaseLedger, environment: str, version: str, digests: dict, build: str, status: str) -> None:
    release_id = ledger.start(environment, version, digests["backend"][build], digests["frontend"][build], "blue")
    ledger.finish(release_id, status)


def ledger_with_history(path: Path, digests: dict) -> ReleaseLedger:
    """staging: 0.1.0, 0.2.0 replaced, 0.3.0 serving; production: 0.2.0 serving."""
    ledger = ReleaseLedger(path)
    for version, build in (("0.1.0", "b1"), ("0.2.0", "b2")):
        record(ledger, "staging", version, digests, build, "replaced")
    record(ledger, "production", "0.2.0", digests, "b2", "verified")
    record(ledger, "staging", "0.3.0", digests, "b4", "verified")
    return ledger


def deps(client: RegistryClient, server: RegistryServer | None, prefix: str, ledger, running) -> RetentionDeps:
    return RetentionDeps(
        client=client, repositories=(f"{prefix}/backend", f"{prefix}/frontend"), environments=("staging", "production"),
        ledger=ledger, running_images=running, server=lambda: server, engine=None, log=lambda _: None,
    )  # fmt: skip


@pytest.mark.services
def test_retention_keeps_serving_releases_and_last_builds_and_frees_the_rest(
    server: RegistryServer, client: RegistryClient, tmp_path: Path
) -> None:
    digests = seed(server, "keep")
    ledger = ledger_with_history(tmp_path, digests)
    running = {
        # staging's serving slot pinned by digest; production's idle (stopped) slot still names a build by tag.
        "staging": [client.pinned_ref("keep/backend", digests["backend"]["b4"]),
                    client.pinned_ref("keep/frontend", digests["frontend"]["b4"])],
        "production": [client.pinned_ref("keep/backend", digests["backend"]["b2"]),
                       client.image_ref("keep/frontend", "0.2.1-c3"), "shop/backend:local"],
    }  # fmt: skip
    before = folder_bytes(server.storage)

    report = housekeep(
        deps(client, server, "keep", lambda: ledger, running.__getitem__), keep_releases=2, keep_builds=2
    )

    deleted = {(d.repository, d.digest) for d in report.deletion.deleted}
    assert deleted == {
        ("keep/backend", digests["backend"]["b1"]),
        ("keep/backend", digests["backend"]["b3"]),
        ("keep/frontend", digests["frontend"]["b1"]),
    }, report.metadata()["decisions"]
    assert report.errors == [] and report.deletion.skipped == []
    reasons = {(d.repository, d.digest): "; ".join(d.reasons) for d in report.decisions}
    assert "serves on staging" in reasons[("keep/backend", digests["backend"]["b4"])]
    assert "rollback target on staging" in reasons[("keep/backend", digests["backend"]["b2"])]
    assert "runs on production (0.2.1-c3)" in reasons[("keep/frontend", digests["frontend"]["b3"])]
    assert "release 0.4.0 is newer" in reasons[("keep/backend", digests["backend"]["b6"])]
    assert "last 2 builds" in reasons[("keep/backend", digests["backend"]["b5"])]

    for repository, digest in deleted:
        assert client.manifest(repository, digest) is None
    assert "0.1.0" not in client.tags("keep/backend") and "0.2.1-c3" not in client.tags("keep/backend")
    for role in ("backend", "frontend"):
        for build in ("b2", "b4", "b5", "b6"):
            assert pullable(server, f"keep/{role}", digests[role][build]), (role, build)
    assert "0.2.1-c3" in client.tags("keep/frontend")

    gc = report.collection
    assert gc is not None and gc.blobs_deleted >= 3
    # Three images' own layers (and configs) are gone; the shared base layer stays.
    assert gc.bytes_freed >= 3 * LAYER_BYTES and folder_bytes(server.storage) < before - 3 * LAYER_BYTES
    assert report.metadata()["bytes_freed"] == gc.bytes_freed
    # Writable again after the collection: a push goes through.
    assert not server.read_only()
    assert push_blob(server, "keep/backend", b"after gc")[1].status_code == 201


@pytest.mark.services
def test_read_only_maintenance_serves_pulls_and_refuses_pushes(server: RegistryServer, client: RegistryClient) -> None:
    digest = push_image(server, "ro/backend", ["0.1.0-c1"], T0, "ro")
    with server.maintenance():
        assert server.read_only()
        assert pullable(server, "ro/backend", digest)
        digest_refused, answer = push_blob(server, "ro/backend", b"pushed during gc")
        assert answer.status_code == 405, answer.text  # distribution answers "Method not allowed" while read-only
        assert client.manifest("ro/backend", digest_refused) is None
    assert not server.read_only() and push_blob(server, "ro/backend", b"pushed after gc")[1].status_code == 201


@pytest.mark.services
def test_nothing_is_deleted_when_the_ledger_or_the_serving_state_cannot_be_read(
    server: RegistryServer, client: RegistryClient, tmp_path: Path
) -> None:
    digests = seed(server, "safe")
    ledger = ledger_with_history(tmp_path, digests)
    tags_before = {role: client.tags(f"safe/{role}") for role in ("backend", "frontend")}

    def broken_ledger() -> ReleaseLedger:
        raise LedgerError("release ledger /nowhere/releases.sqlite is not usable: unable to open database file")

    def unknown(environment: str) -> list[str]:
        raise DeployRefused(f"EcsTarget cannot list the images {environment} runs: not built")

    with pytest.raises(RetentionError, match=r"release ledger cannot be opened.*unable to open.*nothing was deleted"):
        housekeep(deps(client, server, "safe", broken_ledger, lambda _: []), keep_releases=1, keep_builds=0)
    with pytest.raises(RetentionError, match=r"what runs on staging cannot be read.*not built.*nothing was deleted"):
        housekeep(deps(client, server, "safe", lambda: ledger, unknown), keep_releases=1, keep_builds=0)
    stopped = RegistryServer(tmp_path / "elsewhere", free_port())  # a registry this process cannot restart
    (tmp_path / "elsewhere").mkdir()
    with pytest.raises(RetentionError, match=r"cannot do.*collect_garbage: false; nothing was deleted"):
        housekeep(deps(client, stopped, "safe", lambda: ledger, lambda _: []), keep_releases=1, keep_builds=0)

    dry = housekeep(
        deps(client, server, "safe", lambda: ledger, lambda _: []), keep_releases=1, keep_builds=0, dry_run=True
    )
    assert sum(not d.keep for d in dry.decisions) >= 2 and dry.deletion.deleted == []
    assert {role: client.tags(f"safe/{role}") for role in ("backend", "frontend")} == tags_before


def test_plan_keeps_every_tag_of_a_kept_digest_and_unmanaged_tags() -> None:
    old, new = T0, T0 + timedelta(days=1)
    images = [
        StoredImage("shop/backend", "sha256:" + "a" * 64, ("0.1.0", "0.1.0-c1"), old),
        StoredImage("shop/backend", "sha256:" + "b" * 64, ("0.1.1-c2", "latest"), old),
        StoredImage("shop/backend", "sha256:" + "c" * 64, ("0.1.2-c3",), None),
        StoredImage("shop/backend", "sha256:" + "d" * 64, ("0.1.3-c4",), new),
        StoredImage("shop/backend", "sha256:" + "e" * 64, ("0.0.9", "0.0.9-c0"), old),
    ]
    keeps = Keeps()
    keeps.versions.update({"0.1.0", "0.0.9"})
    keeps.add("sha256:" + "a" * 64, "serves on production (0.1.0, ledger)")
    decisions = {d.digest[7]: d for d in plan(images, keeps, keep_builds=1)}
    assert decisions["a"].keep and decisions["a"].tags == ("0.1.0", "0.1.0-c1")
    assert decisions["b"].keep and "latest" in decisions["b"].reasons[0]
    assert decisions["c"].keep and "build date unknown" in decisions["c"].reasons[0]
    assert decisions["d"].keep and "last 1 builds" in decisions["d"].reasons[0]
    assert not decisions["e"].keep  # an old release out of the ledger's recent history, not serving
    assert [d.digest[7] for d in plan(images, keeps, keep_builds=1) if not d.keep] == ["e"]


@pytest.mark.services
def test_local_store_loses_names_of_deleted_images_only(engine: DockerEngine, tmp_path: Path) -> None:
    # An image of this test's own (FROM scratch, a label): other tests share the engine's store.
    address, repository = f"127.0.0.1:{free_port()}", "prune/backend"
    (tmp_path / "Dockerfile").write_text(f"FROM scratch\nLABEL io.shop-ops.test={tmp_path.name}\n")
    keeper = f"shop-ops-test-prune:{tmp_path.name.lower()}"
    image_id = engine.build(tmp_path, keeper).image_id
    names = {tag: f"{address}/{repository}:{tag}" for tag in ("0.1.0-c1", "0.3.0", "0.0.1-gone")}
    for ref in names.values():
        engine.tag(image_id, ref)
    try:
        decisions = [
            Decision(repository, "sha256:" + "1" * 64, ("0.1.0-c1",), T0, False, ("not kept",)),
            Decision(repository, "sha256:" + "3" * 64, ("0.3.0",), T0, True, ("serves",)),
        ]
        later = datetime.now(UTC) + timedelta(days=1)
        dry = prune_local_images(engine, address, decisions, decisions[:1], dry_run=True, now=lambda: later)
        assert not any(p.removed for p in dry) and all(engine.image_exists(ref) for ref in names.values())
        young = prune_local_images(engine, address, decisions, [], now=lambda: datetime.now(UTC))
        assert not any(p.removed for p in young)  # nothing deleted now, and not old enough to be a leftover

        pruned = {
            p.reference: p for p in prune_local_images(engine, address, decisions, decisions[:1], now=lambda: later)
        }
        assert pruned[names["0.1.0-c1"]].removed and not engine.image_exists(names["0.1.0-c1"])
        assert pruned[names["0.0.1-gone"]].removed  # not in the registry any more, older than an hour
        assert not pruned[names["0.3.0"]].removed and engine.image_exists(names["0.3.0"])
        assert engine.image_exists(keeper)  # names outside the shop's repositories are never touched
    finally:
        for ref in (*names.values(), keeper):
            engine.remove_image(ref)


class _Serving(ReleaseTarget):
    """A release target whose environments run the images named in `images` (environment -> references)."""

    images: dict[str, list[str]] = {}  # noqa: RUF012 (a pydantic field)

    def strategy(self, environment: str, log):  # type: ignore[override]
        raise NotImplementedError

    def url(self, environment: str) -> str:
        return f"http://{environment}.invalid"

    def running_images(self, environment: str) -> list[str]:
        return self.images.get(environment, [])


@pytest.mark.services
def test_the_job_reports_counts_bytes_and_the_table(
    server: RegistryServer, client: RegistryClient, tmp_path: Path
) -> None:
    digests = seed(server, "job")
    ledger_with_history(tmp_path, digests)
    registry = RegistryResource(
        url=server.url, credentials_file=str(server.credentials_file), local_folder=str(server.datadir),
        backend_repository="job/backend", frontend_repository="job/frontend",
    )  # fmt: skip
    ledger = LedgerResource(state_dir=str(tmp_path))
    job = build_registry_retention_job(keep_releases=2, keep_builds=1, prune_local_images=False)
    containers = ContainersResource(docker_host="unix:///nowhere")  # not asked: prune_local_images is off
    target = _Serving(registry=registry, ledger=ledger, k6=K6Resource())
    result = job.execute_in_process(
        resources={"registry": registry, "ledger": ledger, "containers": containers, "release_target": target}
    )
    assert result.success
    [output] = [e for e in result.all_node_events if e.event_type_value == "STEP_OUTPUT"]
    metadata = {k: v.value for k, v in output.event_specific_data.metadata.items()}
    # b1 (old release) and b3, b5 (builds past the last one) go in both repositories; b2, b4, b6 stay.
    assert (metadata["kept"], metadata["deleted"], metadata["failed"]) == (6, 6, 0)
    assert metadata["bytes_freed"] >= 6 * LAYER_BYTES
    assert "| delete " in metadata["decisions"] and "serves on staging (0.3.0, ledger)" in metadata["decisions"]
    assert client.manifest("job/backend", digests["backend"]["b5"]) is None
    assert pullable(server, "job/frontend", digests["frontend"]["b6"])


ECR = "123456789012.dkr.ecr.eu-central-1.amazonaws.com"


def test_on_ecr_images_are_deleted_by_digest_and_ecs_tells_what_runs(aws, tmp_path: Path) -> None:
    """The aws path over moto: ECR's API lists and deletes (ECR collects its own layers), ECS says what runs."""
    ecr, ecs = aws.client("ecr"), aws.ecs()
    prefix = f"ecr{tmp_path.name[-6:].lower()}"
    digests: dict[str, dict[str, str]] = {}
    for role in ("backend", "frontend"):
        repository = f"{prefix}/{role}"
        ecr.create_repository(repositoryName=repository)
        digests[role] = {}
        for name, tags in {"b1": ["0.1.0-c1", "0.1.0"], "b2": ["0.2.0-c2", "0.2.0"], "b3": ["0.2.1-c3"],
                           "b4": ["0.3.0-c4", "0.3.0"], "b5": ["0.3.1-c5"], "b6": ["0.3.2-c6", "0.4.0"]}.items():  # fmt: skip
            manifest = json.dumps(
                {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "annotations": {"seed": f"{role}{name}"}}
            )
            for tag in tags:
                answer = ecr.put_image(repositoryName=repository, imageManifest=manifest, imageTag=tag)
            digests[role][name] = answer["image"]["imageId"]["imageDigest"]
    ledger = ledger_with_history(tmp_path, digests)

    # What runs comes from the ECS service's task definition (images pinned by digest, as releases register them).
    ecs.create_cluster(clusterName=prefix)
    images = [f"{ECR}/{prefix}/{role}@{digests[role]['b4']}" for role in ("backend", "frontend")]
    definition = ecs.register_task_definition(
        family=f"{prefix}-staging",
        containerDefinitions=[{"name": f"c{n}", "image": image, "memory": 256} for n, image in enumerate(images)],
    )["taskDefinition"]["taskDefinitionArn"]
    ecs.create_service(cluster=prefix, serviceName="shop-staging", taskDefinition=definition, desiredCount=1)
    registry = RegistryResource(url=f"https://{ECR}", aws=aws, backend_repository=f"{prefix}/backend",
                                frontend_repository=f"{prefix}/frontend")  # fmt: skip
    target = EcsTarget(
        registry=registry, ledger=LedgerResource(state_dir=str(tmp_path)), k6=K6Resource(), aws=aws, cluster=prefix,
        services={"staging": "shop-staging"}, urls={"staging": "https://staging.invalid"},
    )  # fmt: skip
    staging = target.running_images("staging")
    assert staging == sorted(images)
    with pytest.raises(DeployRefused, match="unknown environment 'production'"):
        target.running_images("production")

    store = registry.images_api()
    assert isinstance(store, EcrImages)
    running = {"staging": staging, "production": [f"{ECR}/{prefix}/frontend:0.2.1-c3"]}
    report = housekeep(
        RetentionDeps(
            client=store, repositories=(f"{prefix}/backend", f"{prefix}/frontend"),
            environments=("staging", "production"), ledger=lambda: ledger, running_images=running.__getitem__,
            server=registry.server, engine=None, log=lambda _: None,
        ),
        keep_releases=2, keep_builds=0,
    )  # fmt: skip

    deleted = {(d.repository.split("/")[1], d.digest) for d in report.deletion.deleted}
    assert deleted == {
        ("backend", digests["backend"]["b1"]), ("backend", digests["backend"]["b3"]),
        ("backend", digests["backend"]["b5"]), ("frontend", digests["frontend"]["b1"]),
        ("frontend", digests["frontend"]["b5"]),
    }  # fmt: skip
    assert report.errors == [] and report.collection is None and report.collection_note == "the registry's own"
    for role in ("backend", "frontend"):
        left = {i["imageDigest"] for i in ecr.describe_images(repositoryName=f"{prefix}/{role}")["imageDetails"]}
        assert left == {d for name, d in digests[role].items() if (role, d) not in deleted}
    assert store.delete_manifest(f"{prefix}/backend", digests["backend"]["b1"]) is False  # already gone
