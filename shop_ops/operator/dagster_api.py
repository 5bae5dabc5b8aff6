"""Launch a Dagster job through the webserver's GraphQL API, follow its event log to the end, read asset metadata.

`DagsterApi` wraps dagster_graphql's `DagsterGraphQLClient` (launch, status) and asks the same
endpoint for what the client has no method for (a run's events, an asset's materializations).
A launch is what the UI's Launchpad does, so the run is queued and limited like any other; the
tags say who launched it. Nothing here decides whether a run may deploy: the guards live inside
the release flow (approval, verified on staging), so this module is only a remote control.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
from dagster import AssetKey, DagsterRunStatus
from dagster_graphql import DagsterGraphQLClient, DagsterGraphQLClientError

# The one code location (workspace.yaml) and Dagster's name for a Definitions object's repository.
LOCATION = "shop_ops"
REPOSITORY = "__repository__"
# The job the UI launches when someone clicks "Materialize" on assets that no named job covers alone.
ASSET_JOB = "__ASSET_JOB"
FINAL = frozenset({DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED})

_EVENTS_QUERY = """
query RunEvents($runId: ID!, $cursor: String) {
  logsForRun(runId: $runId, afterCursor: $cursor) {
    __typename
    ... on EventConnection {
      cursor
      hasMore
      events {
        __typename
        ... on MessageEvent { message timestamp level stepKey }
        ... on ErrorEvent { error { message } }
      }
    }
    ... on RunNotFoundError { message }
    ... on PythonError { message }
  }
}
"""

_MATERIALIZATIONS_QUERY = """
query Materializations($key: AssetKeyInput!, $limit: Int) {
  assetOrError(assetKey: $key) {
    __typename
    ... on Asset {
      assetMaterializations(limit: $limit) {
        runId
        timestamp
        metadataEntries {
          label
          ... on TextMetadataEntry { text }
          ... on IntMetadataEntry { intValue }
          ... on FloatMetadataEntry { floatValue }
          ... on BoolMetadataEntry { boolValue }
        }
      }
    }
    ... on AssetNotFoundError { message }
  }
}
"""


_LOCATIONS_QUERY = """
query Locations {
  workspaceOrError {
    __typename
    ... on Workspace {
      locationEntries {
        name
        loadStatus
        locationOrLoadError { __typename ... on PythonError { message } }
      }
    }
    ... on PythonError { message }
  }
}
"""


_RUNS_QUERY = """
query Runs($filter: RunsFilter!, $limit: Int) {
  runsOrError(filter: $filter, limit: $limit) {
    __typename
    ... on Runs { results { runId jobName status startTime } }
    ... on InvalidPipelineRunsFilterError { message }
    ... on PythonError { message }
  }
}
"""


class OperatorError(RuntimeError):
    """A launch or a query did not go through; the message names the cause and what to do."""


class CommandFailed(OperatorError):
    """What an operator command acts on is not in order (down, refusing): the message names it and the fix."""


@dataclass(frozen=True)
class RunEvent:
    """One line of a run's event log."""

    timestamp: float  # epoch seconds
    level: str
    step: str | None
    message: str
    error: str | None  # the error's message on failure events

    def line(self) -> str:
        clock = time.strftime("%H:%M:%S", time.gmtime(self.timestamp))
        text = f"{self.message} {self.error}" if self.error else self.message
        return f"{clock} {self.level:<8} {self.step or '-'}: {' '.join(text.split())}"


@dataclass(frozen=True)
class RunOutcome:
    """How a followed run ended (or where it stood at the timeout), with the errors its events carried."""

    job: str
    run_id: str
    status: str
    url: str
    errors: tuple[str, ...]
    timed_out: bool = False

    @property
    def succeeded(self) -> bool:
        return self.status == DagsterRunStatus.SUCCESS.value and not self.timed_out

    def summary(self) -> str:
        """One line: the job, the run, its status and, when it did not succeed, the first error."""
        if self.timed_out:
            return f"{self.job} run {self.run_id} still {self.status} when the wait ended (it goes on: {self.url})"
        head = f"{self.job} run {self.run_id} ended {self.status}"
        if self.succeeded:
            return head
        reason = " ".join(self.errors[0].split()) if self.errors else "no error in its event log"
        return f"{head}: {reason} ({self.url})"


def parse_tags(pairs: list[str]) -> dict[str, str]:
    """`key=value` strings -> a dict; a pair without `=` or with an empty key is an error naming it."""
    tags: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise OperatorError(f"tag {pair!r} is not key=value (e.g. --tag shop-ops/launched-by=ci)")
        tags[key.strip()] = value
    return tags


def _client_error(exc: DagsterGraphQLClientError) -> str:
    """The kind of error and what the server said of it (a message, or config errors each with its message)."""
    kind = str(exc.args[0]).strip().splitlines()[0] if exc.args else type(exc).__name__
    detail: Any = exc.args[1] if len(exc.args) > 1 else exc.body
    if isinstance(detail, list):
        detail = "; ".join(str(e.get("message", e)) if isinstance(e, dict) else str(e) for e in detail)
    text = " ".join(str(detail).split()) if detail is not None else ""
    return f"{kind}: {text[:600]}" if text else kind


class DagsterApi:
    """One Dagster webserver, addressed by its URL (`http://host:port[/prefix]`), optionally behind a bearer token."""

    def __init__(self, url: str, token: str | None = None, timeout: float = 60) -> None:
        parts = urlsplit(url.rstrip("/"))
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise OperatorError(f"Dagster URL {url!r} is not http(s)://host[:port][/prefix] (set --dagster-url)")
        self.url = url.rstrip("/")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout)
        self.client = DagsterGraphQLClient(
            parts.hostname, port_number=parts.port, use_https=parts.scheme == "https", timeout=int(timeout),
            headers=headers or None, path_prefix=parts.path,
        )  # fmt: skip

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> DagsterApi:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def run_url(self, run_id: str) -> str:
        return f"{self.url}/runs/{run_id}"

    def query(self, query: str, variables: Mapping[str, Any]) -> dict[str, Any]:
        """POST one GraphQL query; its `data`, or an OperatorError with the server's errors."""
        try:
            response = self._http.post("/graphql", json={"query": query, "variables": dict(variables)})
        except httpx.HTTPError as exc:
            raise OperatorError(f"Dagster at {self.url} did not answer ({type(exc).__name__}: {exc})") from None
        if response.status_code != 200:
            raise OperatorError(f"Dagster at {self.url} answered HTTP {response.status_code}: {response.text[:200]}")
        body = response.json()
        if body.get("errors"):
            raise OperatorError(f"Dagster's GraphQL API refused the query: {body['errors'][0].get('message')}")
        return body["data"]

    def wait_for_location(self, timeout: float = 180, poll: float = 0.5) -> None:
        """Until the code location `shop_ops` is loaded (a webserver answers before its code server is up)."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.query(_LOCATIONS_QUERY, {})["workspaceOrError"]
            if found["__typename"] != "Workspace":
                raise OperatorError(f"Dagster at {self.url} cannot list its code locations: {found.get('message')}")
            entry = next((e for e in found["locationEntries"] if e["name"] == LOCATION), None)
            if entry is None:
                names = ", ".join(e["name"] for e in found["locationEntries"]) or "none"
                raise OperatorError(f"Dagster at {self.url} has no code location {LOCATION} (it has: {names})")
            loaded = entry["locationOrLoadError"] or {}
            if loaded.get("__typename") == "PythonError":
                first = (loaded.get("message") or "").strip().splitlines()[:1]
                raise OperatorError(
                    f"code location {LOCATION} failed to load in Dagster at {self.url}: {' '.join(first)} "
                    "(see the UI's Deployment page; fix and reload the location)"
                )
            if entry["loadStatus"] == "LOADED" and loaded.get("__typename") == "RepositoryLocation":
                return
            if time.monotonic() >= deadline:
                raise OperatorError(f"code location {LOCATION} still {entry['loadStatus']} after {timeout:g} s")
            time.sleep(poll)

    def launch(
        self,
        job: str,
        run_config: Mapping[str, Any] | None = None,
        tags: Mapping[str, str] | None = None,
        asset_selection: Sequence[Sequence[str]] | None = None,
    ) -> str:
        """Submit `job` of the code location `shop_ops` as the Launchpad does (with `asset_selection`: only those
        assets, as the UI's "Materialize" launches ASSET_JOB); returns the run id."""
        self.wait_for_location()  # also the clear error when the webserver is not there
        selection = [AssetKey(list(key)) for key in asset_selection] if asset_selection else None
        try:
            return self.client.submit_job_execution(
                job, repository_location_name=LOCATION, repository_name=REPOSITORY, run_config=dict(run_config or {}),
                tags=dict(tags or {}), asset_selection=selection,
            )  # fmt: skip
        except DagsterGraphQLClientError as exc:
            raise OperatorError(f"launching {job} at {self.url} failed: {_client_error(exc)}") from None

    def status(self, run_id: str) -> DagsterRunStatus:
        try:
            return self.client.get_run_status(run_id)
        except DagsterGraphQLClientError as exc:
            raise OperatorError(f"status of run {run_id} at {self.url}: {str(exc).splitlines()[0]}") from None

    def events(self, run_id: str, cursor: str | None = None) -> tuple[list[RunEvent], str | None, bool]:
        """The run's events after `cursor`: (events, next cursor, whether more are waiting)."""
        found = self.query(_EVENTS_QUERY, {"runId": run_id, "cursor": cursor})["logsForRun"]
        if found["__typename"] != "EventConnection":
            raise OperatorError(f"events of run {run_id}: {found['__typename']}: {found.get('message', '')}")
        events = [
            RunEvent(
                timestamp=int(e["timestamp"]) / 1000,
                level=e["level"],
                step=e.get("stepKey"),
                message=e["message"],
                error=(e.get("error") or {}).get("message"),
            )
            for e in found["events"]
            if e.get("message", "").strip() or (e.get("error") or {}).get("message")
        ]
        return events, found["cursor"], found["hasMore"]

    def follow(
        self,
        job: str,
        run_id: str,
        on_event: Callable[[RunEvent], None] = lambda _: None,
        timeout: float = 3600,
        poll: float = 1.0,
    ) -> RunOutcome:
        """Hand every event to `on_event` until the run ends (or `timeout` s pass); the outcome with its errors."""
        deadline = time.monotonic() + timeout
        cursor: str | None = None
        errors: list[str] = []

        def drain() -> None:
            nonlocal cursor
            more = True
            while more:
                events, cursor, more = self.events(run_id, cursor)
                for event in events:
                    if event.error:
                        errors.append(event.error)
                    on_event(event)

        while True:
            status = self.status(run_id)
            drain()
            if status in FINAL:
                return RunOutcome(job, run_id, status.value, self.run_url(run_id), tuple(errors))
            if time.monotonic() >= deadline:
                return RunOutcome(job, run_id, status.value, self.run_url(run_id), tuple(errors), timed_out=True)
            time.sleep(poll)

    def runs(
        self, job: str, tags: Mapping[str, str] | None = None, statuses: Sequence[str] = (), limit: int = 10
    ) -> list[dict[str, Any]]:
        """The newest `limit` runs of `job` with all of `tags` (and one of `statuses`, e.g. SUCCESS), newest first:
        {runId, jobName, status, startTime}."""
        run_filter: dict[str, Any] = {
            "pipelineName": job,
            "tags": [{"key": key, "value": value} for key, value in (tags or {}).items()],
        }
        if statuses:
            run_filter["statuses"] = list(statuses)
        found = self.query(_RUNS_QUERY, {"filter": run_filter, "limit": limit})["runsOrError"]
        if found["__typename"] != "Runs":
            raise OperatorError(f"runs of {job} at {self.url}: {found['__typename']}: {found.get('message', '')}")
        return list(found["results"])

    def materializations(self, asset_key: list[str], limit: int = 50) -> list[dict[str, Any]]:
        """The newest `limit` materializations of an asset, newest first: {run_id, timestamp, metadata} (none when
        the instance never materialized it)."""
        found = self.query(_MATERIALIZATIONS_QUERY, {"key": {"path": asset_key}, "limit": limit})["assetOrError"]
        if found["__typename"] == "AssetNotFoundError":  # never materialized in this instance
            return []
        if found["__typename"] != "Asset":
            raise OperatorError(f"asset {'/'.join(asset_key)} at {self.url}: {found.get('message', 'not found')}")
        rows = []
        for event in found["assetMaterializations"]:
            metadata = {
                entry["label"]: next(
                    (entry[k] for k in ("text", "intValue", "floatValue", "boolValue") if k in entry), None
                )
                for entry in event["metadataEntries"]
            }
            rows.append({"run_id": event["runId"], "timestamp": int(event["timestamp"]) / 1000, "metadata": metadata})
        return sorted(rows, key=lambda row: row["timestamp"], reverse=True)


def verified_release(api: DagsterApi, version: str, environment: str = "staging") -> dict[str, str]:
    """The release `version` as it was verified on `environment` (its deployment asset's metadata):
    {version, backend_digest, frontend_digest}. An OperatorError when no verified deployment of it is recorded."""
    for row in api.materializations([environment, "deployment"]):
        metadata = row["metadata"]
        if metadata.get("version") == version and metadata.get("status") == "verified":
            return {key: str(metadata[key]) for key in ("version", "backend_digest", "frontend_digest")}
    raise OperatorError(
        f"no verified deployment of {version} on {environment} in Dagster at {api.url}: release it to {environment} "
        "first (the registry push sensor does), or check the version"
    )


def serving_release(api: DagsterApi, environment: str) -> dict[str, str] | None:
    """What the pipeline last put on `environment`, when that ended verified (a deploy or a rollback records a
    materialization of its deployment asset): {version, backend_digest, frontend_digest, run_id}; None otherwise."""
    rows = api.materializations([environment, "deployment"], limit=1)
    if not rows or rows[0]["metadata"].get("status") != "verified":
        return None
    metadata = rows[0]["metadata"]
    found = {key: str(metadata.get(key) or "") for key in ("version", "backend_digest", "frontend_digest")}
    return {**found, "run_id": rows[0]["run_id"]}


def promote_run_config(release: Mapping[str, str], approved_by: str, environment: str = "production") -> dict:
    """The run config of `promote_production` (the deployment asset's ReleaseConfig) for a verified release."""
    if not approved_by.strip():
        raise OperatorError("approved_by is empty: name who approved the production deploy (--approved-by)")
    config = {key: release[key] for key in ("version", "backend_digest", "frontend_digest")}
    return {"ops": {f"{environment}__deployment": {"config": {**config, "approved_by": approved_by.strip()}}}}
