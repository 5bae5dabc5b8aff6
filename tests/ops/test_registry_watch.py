"""The registry watch (shop_ops/release/registry_watch.py) against the real session registry (htpasswd auth).

Own repositories (`watch-test/*`): derived images of the locally built shop images are pushed
once per module; extra tags are added through the registry API (same manifest, new name).
The tests run in file order; the last one moves a release tag to new images.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from shop_ops.release.registry_watch import ReleaseCandidate, WatchCursor, release_key, release_version, scan
from shop_ops.resources.containers import DockerEngine, RegistryAuth
from shop_ops.resources.registry import OCI_MANIFEST, EcrImages, RegistryClient, RegistryResource
from shop_ops.services.processes import free_port

BACKEND = "watch-test/backend"
FRONTEND = "watch-test/frontend"
BASES = {BACKEND: "localhost/shop-backend:local", FRONTEND: "localhost/shop-frontend:local"}


@dataclass
class Pushed:
    digests: dict[str, str]  # repository -> digest of its 0.2.0
    push: Callable[[str, str, str], str]  # (repository, tag, label) -> digest: builds and pushes one more derived image


@pytest.fixture(scope="module")
def pushed(request, engine: DockerEngine, registry_client: RegistryClient) -> Iterator[Pushed]:
    if not all(engine.image_exists(base) for base in BASES.values()):
        request.getfixturevalue("built")  # scripts/build-images.sh, only when the :local images are missing
    user, password = registry_client.credentials()  # type: ignore[misc]
    auth = RegistryAuth(user, password, server=registry_client.address)
    context = Path(tempfile.mkdtemp(prefix="shop-ops-test-watch-"))
    refs: list[str] = []

    def push(repository: str, tag: str, label: str) -> str:
        (context / "Dockerfile").write_text(f"FROM {BASES[repository]}\nLABEL io.shop-ops.watch-test={label}\n")
        ref = registry_client.image_ref(repository, tag)
        engine.build(context, ref, use_cache=True)
        refs.append(ref)
        return engine.push(ref, auth=auth, insecure=True)

    digests = {repo: push(repo, "0.2.0", "0.2.0") for repo in (BACKEND, FRONTEND)}
    for tag in ("0.2.0-abc1234", "latest", "0.3.0"):  # 0.3.0 only in the backend repository
        registry_client.add_tag(BACKEND, "0.2.0", tag)
    registry_client.add_tag(FRONTEND, "0.2.0", "main")
    yield Pushed(digests, push)
    shutil.rmtree(context, ignore_errors=True)
    for ref in refs:
        engine.remove_image(ref)


def test_release_versions_and_cursor_round_trip() -> None:
    assert release_version("0.2.0") == (0, 2, 0)
    assert release_version("10.0.11") == (10, 0, 11)
    for tag in ("0.2.0-abc1234", "latest", "main", "v0.2.0", "01.2.3", "0.2", "0.2.0.1"):
        assert release_version(tag) is None, tag
    key = release_key("0.2.0", "sha256:" + "a" * 64, "sha256:" + "b" * 64)
    cursor = WatchCursor.from_json(WatchCursor(frozenset({key})).to_json())
    assert cursor.requested == {key} and cursor.note is None


@pytest.mark.parametrize("text", [None, "", "  ", "{not json", "[1, 2]", '{"format": 1, "requested": ["x"]}', "42"])
def test_empty_or_garbage_cursor_is_empty_with_a_reason(text) -> None:
    cursor = WatchCursor.from_json(text)
    assert cursor.requested == frozenset()
    assert cursor.note, text


def test_new_release_then_nothing_new(pushed: Pushed, registry_client: RegistryClient) -> None:
    first = scan(registry_client, BACKEND, FRONTEND, WatchCursor.from_json(None))
    assert first.error is None, first.error
    backend, frontend = pushed.digests[BACKEND], pushed.digests[FRONTEND]
    assert first.new_releases == [ReleaseCandidate("0.2.0", backend, frontend, f"release:0.2.0:{backend}:{frontend}")]
    assert first.notes and "no cursor" in first.notes[0]

    again = scan(registry_client, BACKEND, FRONTEND, WatchCursor.from_json(first.cursor.to_json()))
    assert again.error is None and again.new_releases == []
    assert again.known == ["0.2.0"]
    assert again.cursor == first.cursor


def test_non_release_and_one_sided_tags_are_skipped_with_reasons(pushed: Pushed, registry_client) -> None:
    result = scan(registry_client, BACKEND, FRONTEND, WatchCursor())
    assert [c.version for c in result.new_releases] == ["0.2.0"]
    reasons = "\n".join(result.skipped)
    assert f"{BACKEND}:0.2.0-abc1234: not a release version" in reasons
    assert f"{BACKEND}:latest: not a release version" in reasons
    assert f"{FRONTEND}:main: not a release version" in reasons
    assert f"{BACKEND}:0.3.0: waiting for the frontend 0.3.0" in reasons


def test_garbage_cursor_counts_as_empty_and_yields_the_same_run_key(pushed: Pushed, registry_client) -> None:
    clean = scan(registry_client, BACKEND, FRONTEND, WatchCursor())
    garbage = scan(registry_client, BACKEND, FRONTEND, WatchCursor.from_json("{garbage"))
    assert garbage.error is None
    assert garbage.notes and "not JSON" in garbage.notes[0]
    # the same deterministic key: Dagster's run_key deduplication still stops a second run
    assert [c.run_key for c in garbage.new_releases] == [c.run_key for c in clean.new_releases]


def test_registry_down_sets_error_and_keeps_the_cursor(pushed: Pushed, registry_client) -> None:
    cursor = scan(registry_client, BACKEND, FRONTEND, WatchCursor()).cursor
    down = RegistryClient(f"http://127.0.0.1:{free_port()}", registry_client.credentials_file, timeout=3)
    result = scan(down, BACKEND, FRONTEND, cursor)
    assert result.error and "does not answer" in result.error
    assert result.new_releases == [] and result.cursor == cursor


class _Garbage(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.end_headers()
        self.wfile.write(b"<html>captive portal</html>")

    def log_message(self, *args):
        pass


def test_registry_answering_garbage_sets_error_and_keeps_the_cursor(registry_client) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Garbage)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        cursor = WatchCursor.from_json(None)
        result = scan(
            RegistryClient(f"http://127.0.0.1:{server.server_address[1]}", timeout=3), BACKEND, FRONTEND, cursor
        )
    finally:
        server.shutdown()
        server.server_close()
    assert result.error and "not the distribution API" in result.error
    assert result.new_releases == [] and result.cursor is cursor


def test_retag_of_requested_images_is_not_a_new_release(pushed: Pushed, registry_client) -> None:
    cursor = scan(registry_client, BACKEND, FRONTEND, WatchCursor()).cursor
    for repo in (BACKEND, FRONTEND):
        registry_client.add_tag(repo, "0.2.0", "0.2.1")
    result = scan(registry_client, BACKEND, FRONTEND, cursor)
    assert result.error is None and result.new_releases == []
    assert any(s.startswith("0.2.1: same images as release 0.2.0") for s in result.skipped), result.skipped
    # from an empty cursor, the lowest version of the pair wins and the re-tag is still skipped
    fresh = scan(registry_client, BACKEND, FRONTEND, WatchCursor())
    assert [c.version for c in fresh.new_releases] == ["0.2.0"]


def test_release_tag_moved_to_new_images_is_a_new_release(pushed: Pushed, registry_client) -> None:
    cursor = scan(registry_client, BACKEND, FRONTEND, WatchCursor()).cursor
    new_frontend = pushed.push(FRONTEND, "0.2.0", "0.2.0-rebuilt")
    assert new_frontend != pushed.digests[FRONTEND]
    result = scan(registry_client, BACKEND, FRONTEND, cursor)
    assert [(c.version, c.frontend_digest) for c in result.new_releases] == [("0.2.0", new_frontend)]
    assert result.cursor.requested == cursor.requested | {result.new_releases[0].run_key}


def test_on_aws_the_watch_lists_ecr_through_its_api(aws, tmp_path: Path) -> None:
    """The aws profile's sensor reads ECR's API (moto): a version in both repositories is one release, by digest."""
    ecr = aws.client("ecr")
    prefix = f"watch{tmp_path.name[-6:].lower()}"
    digests = {}
    for role in ("backend", "frontend"):
        repository = f"{prefix}/{role}"
        ecr.create_repository(repositoryName=repository)
        manifest = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "annotations": {"seed": role}})
        for tag in ("0.3.0-abc1234", "0.3.0"):
            image = ecr.put_image(repositoryName=repository, imageManifest=manifest, imageTag=tag)["image"]
        digests[role] = image["imageId"]["imageDigest"]
    ecr.put_image(
        repositoryName=f"{prefix}/backend",
        imageManifest=json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "annotations": {"seed": "only"}}),
        imageTag="0.4.0",
    )
    images = RegistryResource(url="https://123456789012.dkr.ecr.eu-west-1.amazonaws.com", aws=aws).images_api()
    assert isinstance(images, EcrImages)

    result = scan(images, f"{prefix}/backend", f"{prefix}/frontend", WatchCursor())

    assert result.error is None
    assert [(c.version, c.backend_digest, c.frontend_digest) for c in result.new_releases] == [
        ("0.3.0", digests["backend"], digests["frontend"])
    ]
    assert any("0.4.0" in line for line in result.skipped)  # only in one repository so far
    missing = scan(images, f"{prefix}/none", f"{prefix}/frontend", WatchCursor())
    assert missing.new_releases == [] and missing.error is None
