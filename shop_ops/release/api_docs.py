"""The API's documentation per build: the OpenAPI document read out of a backend image, validated, compared
with the previous release's (breaking changes), a changelog entry and a Postman collection.

Plain functions over `DockerEngine` and `RegistryClient`. The document is the one the image itself serves:
a one-off container of the image runs its own Python and prints `shop.main`'s `app.openapi()` (nothing is
connected to: the app is only assembled). The previous release is the highest `MAJOR.MINOR.PATCH` tag in the
backend repository lower than this build's version, read the same way from its image (pulled by digest).

What counts as breaking (a client written against the old document may fail against the new one):
- a removed path, or a removed operation (method) of a path;
- a removed success response (2xx) or a removed media type of one;
- a removed response field (a property of a response schema, followed through `$ref`, arrays and
  `allOf`/`anyOf`/`oneOf`), or a response field that is no longer required (it may now be missing);
- a response value that may now be of another type (type changed, `null` newly allowed);
- a new required request field: a required parameter (path, query, header, cookie) or a required body
  property that was not required before, or a request body that became required;
- a narrowed request type: a type, `null` (nullable) or an enum value no longer accepted, or a request
  media type no longer accepted.
Anything else that differs (new paths, operations, optional fields, error responses, widened request types,
new enum values in responses...) is listed as a non-breaking change. The verdict (`judge`): breaking changes
fail unless the major version went up.
"""

from __future__ import annotations

import argparse
import json
import re
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, Literal

from openapi_spec_validator import validate
from openapi_spec_validator.validation.exceptions import OpenAPIValidationError

from shop_ops.release.images import BuiltImage, ReleaseGate, registry_auth
from shop_ops.release.registry_watch import release_version
from shop_ops.resources.containers import DockerEngine, Hardening
from shop_ops.resources.registry import RegistryClient

Log = Callable[[str], None]
Document = dict[str, Any]
Direction = Literal["request", "response"]
METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
MARKER = "SHOP-OPS-OPENAPI:"
POSTMAN_SCHEMA = "https://schema.getpostman.com/json/collection/v2.1.0/collection.json"
# What the app needs at import and assembly (shop.settings): URLs that are never connected to (port 9, discard).
ASSEMBLY_ENV = {
    "SHOP_DATABASE_URL": "postgresql+asyncpg://shop@127.0.0.1:9/shop",
    "SHOP_REDIS_URL": "redis://127.0.0.1:9/0",
    "SHOP_LOG_LEVEL": "error",
}
# Run in the image: assemble the app (create_app, or a module-level `app` of older images) and print its document.
PRINT_DOCUMENT = (
    "import json, shop.main as m\n"
    "app = m.create_app() if hasattr(m, 'create_app') else m.app\n"
    f"print('\\n{MARKER}' + json.dumps(app.openapi(), separators=(',', ':')), flush=True)\n"
)


class ApiDocsError(RuntimeError):
    """The document could not be read out of an image; the message names the image and the fix."""


# ---------------------------------------------------------------------------------------------- reading


def read_document(engine: DockerEngine, image: str, timeout: float = 120) -> Document:
    """The OpenAPI document of the backend image `image` (a local reference), as its own app produces it."""
    result = engine.run_once(
        image,
        command=["python", "-c", PRINT_DOCUMENT],
        env=ASSEMBLY_ENV,
        timeout=timeout,
        hardening=Hardening(memory_mb=512),
        labels={"io.shop-ops.role": "api-docs"},
    )
    line = next((x for x in reversed(result.stdout.splitlines()) if x.startswith(MARKER)), None)
    if not result.ok or line is None:
        tail = "\n".join(result.logs.strip().splitlines()[-15:])
        raise ApiDocsError(
            f"{image} did not print its OpenAPI document (exit {result.exit_code}): is it a shop backend image "
            f"with shop.main? Its output ends:\n{tail}"
        )
    try:
        document = json.loads(line.removeprefix(MARKER))
    except ValueError as exc:
        raise ApiDocsError(f"{image} printed a document that is not JSON: {exc}") from None
    if not isinstance(document, dict) or "paths" not in document:
        raise ApiDocsError(f"{image} printed JSON that is not an OpenAPI document (no `paths`)")
    return document


def validation_errors(document: Document) -> list[str]:
    """The first error openapi-spec-validator finds in `document` (OpenAPI 3.0/3.1, by its `openapi` field),
    where it is; [] when valid."""
    try:
        validate(document)
    except OpenAPIValidationError as exc:
        where = "/".join(str(p) for p in getattr(exc, "absolute_path", ()) or ())
        return [f"{where or '(document)'}: {exc.message}"]
    return []


def image_document(engine: DockerEngine, image: str, digest: str, cache: Path | None = None) -> Document:
    """`read_document`, kept per manifest digest under `cache` (an image's document never changes): the
    previous release is read once, not on every build."""
    path = cache / f"{digest.replace(':', '-')}.json" if cache is not None else None
    if path is not None and path.is_file():
        try:
            return json.loads(path.read_text())
        except ValueError:
            pass  # a torn or foreign file: read the image again
    document = read_document(engine, image)
    if path is not None:
        _write(path, json.dumps(document, separators=(",", ":")))
    return document


@dataclass(frozen=True)
class PreviousRelease:
    version: str
    digest: str
    document: Document = field(repr=False)


def previous_release_tag(tags: list[str], version: str) -> str | None:
    """The highest release tag (MAJOR.MINOR.PATCH) lower than `version`; None when there is none."""
    current = release_version(version)
    if current is None:
        raise ApiDocsError(f"{version!r} is not a release version MAJOR.MINOR.PATCH")
    lower = [(parsed, tag) for tag in tags if (parsed := release_version(tag)) is not None and parsed < current]
    return max(lower)[1] if lower else None


def read_previous_release(
    engine: DockerEngine,
    registry: RegistryClient,
    repository: str,
    version: str,
    log: Log = print,
    cache: Path | None = None,
) -> PreviousRelease | None:
    """The previous release's document (pulled by digest), or None when `version` is the first release."""
    tag = previous_release_tag(registry.tags(repository), version)
    if tag is None:
        log(f"no release of {repository} before {version}: this is the first document, nothing to compare")
        return None
    digest = registry.manifest_digest(repository, tag)
    if digest is None:
        raise ApiDocsError(f"{repository}:{tag} disappeared while it was read; run again")
    ref = registry.pinned_ref(repository, digest)
    cached = cache is not None and (cache / f"{digest.replace(':', '-')}.json").is_file()
    if not cached:
        engine.ensure_image(ref, auth=registry_auth(registry), insecure=registry.insecure)
    log(f"previous release {tag}: the document of {ref}{' (kept from an earlier read)' if cached else ''}")
    return PreviousRelease(version=tag, digest=digest, document=image_document(engine, ref, digest, cache))


# ---------------------------------------------------------------------------------------------- comparing


@dataclass(frozen=True)
class Change:
    """One difference between two documents: what kind, where (operation and field path), whether it breaks clients."""

    kind: str
    where: str
    detail: str
    breaking: bool

    def line(self) -> str:
        return f"`{self.where}`: {self.detail}"


@dataclass(frozen=True)
class ApiDiff:
    changes: tuple[Change, ...]

    @property
    def breaking(self) -> tuple[Change, ...]:
        return tuple(c for c in self.changes if c.breaking)

    @property
    def added(self) -> tuple[Change, ...]:
        return tuple(c for c in self.changes if not c.breaking and c.kind.startswith("added"))

    @property
    def changed(self) -> tuple[Change, ...]:
        return tuple(c for c in self.changes if not c.breaking and not c.kind.startswith("added"))


def operations(document: Document) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(path, method, operation) of every operation, in document order."""
    for path, item in (document.get("paths") or {}).items():
        for method in METHODS:
            if isinstance(item, dict) and isinstance(item.get(method), dict):
                yield path, method, item[method]


class _Resolver:
    """Follows local `$ref`s (#/components/...) of one document."""

    def __init__(self, document: Document) -> None:
        self.document = document

    def __call__(self, node: Any) -> Any:
        seen: set[str] = set()
        while isinstance(node, dict) and isinstance(node.get("$ref"), str):
            ref = node["$ref"]
            if ref in seen or not ref.startswith("#/"):
                return {}
            seen.add(ref)
            target: Any = self.document
            for part in ref[2:].split("/"):
                target = target.get(part.replace("~1", "/").replace("~0", "~")) if isinstance(target, dict) else None
            node = target if target is not None else {}
        return node


def _types(schema: dict[str, Any], resolve: _Resolver) -> set[str] | None:
    """The JSON types a schema allows (None: any). 3.0's `nullable` and 3.1's `type: [.., "null"]` alike."""
    schema = resolve(schema)
    if not isinstance(schema, dict):
        return None
    for combinator in ("anyOf", "oneOf"):
        if isinstance(schema.get(combinator), list):
            found: set[str] = set()
            for branch in schema[combinator]:
                branch_types = _types(branch, resolve)
                if branch_types is None:
                    return None
                found |= branch_types
            return found
    declared = schema.get("type")
    if declared is None:
        if "properties" in schema:
            declared = "object"
        elif "const" in schema:
            return {_json_type(schema["const"])}
        elif isinstance(schema.get("enum"), list):
            return {_json_type(v) for v in schema["enum"]}
        else:
            return None
    types = {declared} if isinstance(declared, str) else set(declared)
    if schema.get("nullable") is True:
        types.add("null")
    return types


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def _enum(schema: dict[str, Any], resolve: _Resolver) -> set[str] | None:
    """The values an enum (or const) schema allows, as JSON text; None when it is not one."""
    schema = resolve(schema)
    if not isinstance(schema, dict):
        return None
    if "const" in schema:
        return {json.dumps(schema["const"])}
    values = schema.get("enum")
    if isinstance(values, list):
        return {json.dumps(v) for v in values}
    for combinator in ("anyOf", "oneOf"):
        if isinstance(schema.get(combinator), list):
            found: set[str] = set()
            for branch in schema[combinator]:
                branch_types = _types(branch, resolve)
                if branch_types == {"null"}:
                    continue
                values_of = _enum(branch, resolve)
                if values_of is None:
                    return None
                found |= values_of
            return found or None
    return None


def _object_view(schema: Any, resolve: _Resolver) -> tuple[dict[str, Any], set[str], Any]:
    """(properties, required, array items) of a schema, merged over allOf/anyOf/oneOf branches."""
    schema = resolve(schema)
    if not isinstance(schema, dict):
        return {}, set(), None
    properties = dict(schema.get("properties") or {})
    required = set(schema.get("required") or [])
    items = schema.get("items")
    for combinator in ("allOf", "anyOf", "oneOf"):
        for branch in schema.get(combinator) or []:
            props, req, branch_items = _object_view(branch, resolve)
            for name, value in props.items():
                properties.setdefault(name, value)
            if combinator == "allOf":
                required |= req
            items = items if items is not None else branch_items
    return properties, required, items


@dataclass
class _Comparison:
    old: _Resolver
    new: _Resolver
    changes: list[Change] = field(default_factory=list)

    def add(self, kind: str, where: str, detail: str, breaking: bool) -> None:
        self.changes.append(Change(kind, where, detail, breaking))

    def schema(self, old: Any, new: Any, where: str, direction: Direction, depth: int = 0) -> None:
        if depth > 12:  # recursive schemas: deep enough for any real difference
            return
        old_types, new_types = _types(old, self.old), _types(new, self.new)
        if old_types is not None and new_types is not None and old_types != new_types:
            self._types_changed(old_types, new_types, where, direction)
        old_enum, new_enum = _enum(old, self.old), _enum(new, self.new)
        if old_enum is not None or new_enum is not None:
            self._enum_changed(old_enum, new_enum, where, direction)
        old_props, old_req, old_items = _object_view(old, self.old)
        new_props, new_req, new_items = _object_view(new, self.new)
        for name in old_props:
            field_where = f"{where}.{name}"
            if name not in new_props:
                if direction == "response":
                    self.add("removed_response_field", field_where, "response field removed", True)
                else:
                    self.add("removed_request_field", field_where, "request field no longer accepted", False)
                continue
            if direction == "response" and name in old_req and name not in new_req:
                self.add("optional_response_field", field_where, "response field no longer required (may be missing)", True)  # fmt: skip
            if direction == "request" and name in new_req and name not in old_req:
                self.add("new_required_request_field", field_where, "request field is now required", True)
            self.schema(old_props[name], new_props[name], field_where, direction, depth + 1)
        for name in new_props:
            if name in old_props:
                continue
            field_where = f"{where}.{name}"
            if direction == "request" and name in new_req:
                self.add("new_required_request_field", field_where, "new required request field", True)
            else:
                self.add(f"added_{direction}_field", field_where, f"new {'optional ' if direction == 'request' else ''}{direction} field", False)  # fmt: skip
        if old_items is not None and new_items is not None:
            self.schema(old_items, new_items, f"{where}[]", direction, depth + 1)

    def _types_changed(self, old: set[str], new: set[str], where: str, direction: Direction) -> None:
        # JSON Schema: an integer is a number; number -> integer narrows, integer -> number widens.
        def widen(types: set[str]) -> set[str]:
            return types | ({"integer"} if "number" in types else set())

        described = f"type {'|'.join(sorted(old))} -> {'|'.join(sorted(new))}"
        if direction == "request":
            lost = old - widen(new)
            if lost:
                what = "null no longer accepted (nullable removed)" if lost == {"null"} else f"{described}: no longer accepts {', '.join(sorted(lost))}"  # fmt: skip
                self.add("narrowed_request_type", where, what, True)
            else:
                self.add("widened_request_type", where, described, False)
        else:
            gained = new - widen(old)
            if gained:
                what = (
                    "may now be null" if gained == {"null"} else f"{described}: may now be {', '.join(sorted(gained))}"
                )
                self.add("changed_response_type", where, what, True)
            else:
                self.add("narrowed_response_type", where, described, False)

    def _enum_changed(self, old: set[str] | None, new: set[str] | None, where: str, direction: Direction) -> None:
        if old == new:
            return
        if direction == "request":
            if new is not None and (old is None or old - new):
                removed = sorted(old - new) if old is not None else []
                detail = (
                    f"enum values no longer accepted: {', '.join(removed)}" if removed else "now limited to an enum"
                )
                self.add("narrowed_request_enum", where, detail, True)
            else:
                self.add("widened_request_enum", where, "accepts more values", False)
        else:
            added = sorted((new or set()) - (old or set()))
            detail = f"new values: {', '.join(added)}" if added else "fewer possible values"
            self.add("changed_response_enum", where, detail, False)

    def operation(self, op_id: str, old: dict[str, Any], new: dict[str, Any]) -> None:
        self._parameters(op_id, old, new)
        self._request_body(op_id, old, new)
        self._responses(op_id, old, new)

    def _parameters(self, op_id: str, old: dict[str, Any], new: dict[str, Any]) -> None:
        def by_key(op: dict[str, Any], resolve: _Resolver) -> dict[tuple[str, str], dict[str, Any]]:
            params = [resolve(p) for p in op.get("parameters") or []]
            return {(str(p.get("in")), str(p.get("name")).lower() if p.get("in") == "header" else str(p.get("name"))): p
                    for p in params if isinstance(p, dict)}  # fmt: skip

        old_params, new_params = by_key(old, self.old), by_key(new, self.new)
        for key, param in new_params.items():
            where = f"{op_id} {key[0]} parameter {key[1]}"
            before = old_params.get(key)
            if before is None:
                required = bool(param.get("required"))
                kind = "new_required_parameter" if required else "added_parameter"
                self.add(kind, where, "new required parameter" if required else "new optional parameter", required)
                continue
            if param.get("required") and not before.get("required"):
                self.add("new_required_parameter", where, "parameter is now required", True)
            self.schema(before.get("schema") or {}, param.get("schema") or {}, where, "request")
        for key in old_params.keys() - new_params.keys():
            self.add("removed_parameter", f"{op_id} {key[0]} parameter {key[1]}", "parameter no longer read", False)

    def _request_body(self, op_id: str, old: dict[str, Any], new: dict[str, Any]) -> None:
        before, after = self.old(old.get("requestBody") or {}), self.new(new.get("requestBody") or {})
        where = f"{op_id} request body"
        if not after:
            if before:
                self.add("removed_request_body", where, "request body no longer read", False)
            return
        if not before:
            required = bool(after.get("required"))
            kind = "new_required_request_body" if required else "added_request_body"
            self.add(kind, where, "new required request body" if required else "new optional request body", required)
            return
        if after.get("required") and not before.get("required"):
            self.add("new_required_request_body", where, "request body is now required", True)
        old_content, new_content = before.get("content") or {}, after.get("content") or {}
        for media, entry in old_content.items():
            if media not in new_content:
                self.add("removed_request_media_type", f"{where} {media}", "media type no longer accepted", True)
                continue
            self.schema(entry.get("schema") or {}, new_content[media].get("schema") or {}, f"{where} {media}", "request")  # fmt: skip
        for media in new_content.keys() - old_content.keys():
            self.add("added_request_media_type", f"{where} {media}", "media type now accepted", False)

    def _responses(self, op_id: str, old: dict[str, Any], new: dict[str, Any]) -> None:
        old_responses, new_responses = old.get("responses") or {}, new.get("responses") or {}
        for status, response in old_responses.items():
            where = f"{op_id} -> {status}"
            success = str(status).startswith("2")
            if status not in new_responses:
                self.add("removed_response", where, "response no longer documented", success)
                continue
            old_content = self.old(response).get("content") or {}
            new_content = self.new(new_responses[status]).get("content") or {}
            for media, entry in old_content.items():
                if media not in new_content:
                    self.add("removed_response_media_type", f"{where} {media}", "media type no longer answered", success)  # fmt: skip
                    continue
                self.schema(entry.get("schema") or {}, new_content[media].get("schema") or {}, where, "response")
        for status in new_responses.keys() - old_responses.keys():
            self.add("added_response", f"{op_id} -> {status}", "new documented response", False)


def compare_documents(old: Document | None, new: Document) -> ApiDiff:
    """Every difference between `old` and `new` (None: no previous document, every operation is new)."""
    comparison = _Comparison(_Resolver(old or {}), _Resolver(new))
    old_ops = {(path, method): op for path, method, op in operations(old or {})}
    new_ops = {(path, method): op for path, method, op in operations(new)}
    old_paths = set((old or {}).get("paths") or {})
    new_paths = set(new.get("paths") or {})
    for path in sorted(old_paths - new_paths):
        comparison.add("removed_path", path, "path removed", True)
    for (path, method), op in old_ops.items():
        op_id = f"{method.upper()} {path}"
        if (path, method) not in new_ops:
            if path in new_paths:
                comparison.add("removed_operation", op_id, "operation removed", True)
            continue
        comparison.operation(op_id, op, new_ops[(path, method)])
    for (path, method), op in new_ops.items():
        if (path, method) not in old_ops:
            summary = op.get("summary") or op.get("operationId") or ""
            comparison.add("added_operation", f"{method.upper()} {path}", f"new operation{f': {summary}' if summary else ''}", False)  # fmt: skip
    return ApiDiff(tuple(comparison.changes))


# ---------------------------------------------------------------------------------------------- verdict and changelog


@dataclass(frozen=True)
class Verdict:
    passed: bool
    description: str


def major(version: str) -> int:
    parsed = release_version(version)
    if parsed is None:
        raise ApiDocsError(f"{version!r} is not a release version MAJOR.MINOR.PATCH")
    return parsed[0]


def judge(diff: ApiDiff, version: str, previous_version: str | None) -> Verdict:
    """Breaking changes pass only when the major version went up (or there is no previous release)."""
    if previous_version is None:
        return Verdict(True, "first document: nothing to compare")
    count = len(diff.breaking)
    if not count:
        return Verdict(True, f"no breaking change since {previous_version} ({len(diff.changes)} non-breaking)")
    if major(version) > major(previous_version):
        return Verdict(True, f"{count} breaking change(s) since {previous_version}, allowed by the major version {version}")  # fmt: skip
    first = "; ".join(c.line() for c in diff.breaking[:3])
    return Verdict(
        False,
        f"{count} breaking change(s) since {previous_version} without a major version bump "
        f"({version}): {first}{' ...' if count > 3 else ''}. Keep the API compatible, or raise the major version in VERSION",
    )


def changelog_entry(version: str, day: date, diff: ApiDiff, previous_version: str | None) -> str:
    """The diff as a Markdown changelog entry: `## <version> (<date>)`, then Breaking / Added / Changed."""
    lines = [f"## {version} ({day.isoformat()})", ""]
    lines.append(f"Compared with {previous_version}." if previous_version else "First published document.")
    for title, changes in (("Breaking", diff.breaking), ("Added", diff.added), ("Changed", diff.changed)):
        if changes:
            lines += ["", f"### {title}", "", *(f"- {c.line()}" for c in changes)]
    if not diff.changes:
        lines += ["", "No change to the API."]
    return "\n".join(lines) + "\n"


def prepend_entry(changelog: str, entry: str) -> str:
    """`changelog` (a file whose entries start with `## `) with `entry` first; an entry of the same version is replaced."""
    heading = entry.splitlines()[0]
    version = heading.split()[1]
    head, _, rest = changelog.partition("\n## ")
    if not _:
        return f"{changelog.rstrip()}\n\n{entry}" if changelog.strip() else entry
    entries = re.split(r"\n(?=## )", "## " + rest)
    kept = [e.rstrip() + "\n" for e in entries if e.split()[1] != version]
    return "\n".join([head.rstrip() + "\n", entry, *kept])


# ---------------------------------------------------------------------------------------------- Postman


def _example(schema: Any, resolve: _Resolver, depth: int = 0) -> Any:
    """An example value for a request body: the schema's own example, else one built from its properties."""
    schema = resolve(schema)
    if not isinstance(schema, dict) or depth > 6:
        return None
    if schema.get("examples"):
        return schema["examples"][0]
    if "example" in schema:
        return schema["example"]
    if "default" in schema:
        return schema["default"]
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][0]
    properties, required, items = _object_view(schema, resolve)
    if properties:
        names = [n for n in properties if n in required] or list(properties)
        return {name: _example(properties[name], resolve, depth + 1) for name in names}
    types = (_types(schema, resolve) or {"string"}) - {"null"}
    kind = sorted(types)[0] if types else "string"
    if kind == "array":
        return [_example(items, resolve, depth + 1)] if items is not None else []
    return {"integer": 1, "number": 1.0, "boolean": True, "object": {}}.get(kind, "")


def _bearer_schemes(document: Document) -> set[str]:
    schemes = (document.get("components") or {}).get("securitySchemes") or {}
    return {
        name
        for name, scheme in schemes.items()
        if isinstance(scheme, dict) and scheme.get("type") == "http" and str(scheme.get("scheme")).lower() == "bearer"
    }


def postman_collection(document: Document, base_url: str = "http://127.0.0.1:8000") -> dict[str, Any]:
    """A Postman collection (v2.1 format) of every operation, one folder per tag.

    Our own small converter (no kept Python library does it; openapi-to-postmanv2 needs Node, which the run
    image has not): `{{baseUrl}}` (the document's first server, else `base_url`), path parameters as
    `:name` with collection variables, query parameters (optional ones disabled), header parameters,
    a JSON body from the schema's example, and bearer auth (`{{bearerToken}}`) where the operation requires a
    bearer scheme or reads an `Authorization` header.
    """
    resolve = _Resolver(document)
    info = document.get("info") or {}
    servers = document.get("servers") or []
    server = str(servers[0].get("url", "")) if servers and isinstance(servers[0], dict) else ""
    bearer = _bearer_schemes(document)
    global_security = document.get("security")
    folders: dict[str, list[dict[str, Any]]] = {}
    for path, method, op in operations(document):
        params = [resolve(p) for p in op.get("parameters") or []]
        segments = [f":{s[1:-1]}" if s.startswith("{") and s.endswith("}") else s for s in path.strip("/").split("/")]
        query = [
            {
                "key": p["name"],
                "value": str(_example(p.get("schema") or {}, resolve) or ""),
                "disabled": not p.get("required"),
            }
            for p in params
            if p.get("in") == "query"
        ]
        headers = [
            {"key": p["name"], "value": f"{{{{{p['name']}}}}}", "disabled": not p.get("required")}
            for p in params
            if p.get("in") == "header" and p["name"].lower() != "authorization"
        ]
        variables = [{"key": p["name"], "value": ""} for p in params if p.get("in") == "path"]
        raw = "{{baseUrl}}/" + "/".join(segments)
        if query:
            raw += "?" + "&".join(f"{q['key']}={q['value']}" for q in query if not q["disabled"])
            raw = raw.rstrip("?")
        request: dict[str, Any] = {
            "method": method.upper(),
            "header": headers,
            "url": {"raw": raw, "host": ["{{baseUrl}}"], "path": segments, "query": query, "variable": variables},
            "description": op.get("description") or op.get("summary") or "",
        }
        body = resolve(op.get("requestBody") or {})
        content = body.get("content") or {}
        if "application/json" in content:
            example = _example(content["application/json"].get("schema") or {}, resolve)
            request["header"].append({"key": "Content-Type", "value": "application/json"})
            request["body"] = {"mode": "raw", "raw": json.dumps(example, indent=2), "options": {"raw": {"language": "json"}}}  # fmt: skip
        security = op.get("security", global_security) or []
        wants_bearer = any(name in bearer for requirement in security for name in requirement)
        if wants_bearer or any(p.get("in") == "header" and p["name"].lower() == "authorization" for p in params):
            request["auth"] = {"type": "bearer", "bearer": [{"key": "token", "value": "{{bearerToken}}", "type": "string"}]}  # fmt: skip
        name = op.get("summary") or op.get("operationId") or f"{method.upper()} {path}"
        tag = (op.get("tags") or ["default"])[0]
        folders.setdefault(tag, []).append({"name": name, "request": request, "response": []})
    return {
        "info": {
            "name": str(info.get("title") or "API"),
            "description": str(info.get("description") or ""),
            "version": str(info.get("version") or ""),
            "schema": POSTMAN_SCHEMA,
        },
        "item": [{"name": tag, "item": items} for tag, items in folders.items()],
        "variable": [
            {"key": "baseUrl", "value": server or base_url, "type": "string"},
            {"key": "bearerToken", "value": "", "type": "string"},
        ],
    }


# ---------------------------------------------------------------------------------------------- one build


@dataclass(frozen=True)
class ApiDocsReport:
    """The API documentation of one backend build: where its files are, the diff and the verdict."""

    image_ref: str
    digest: str
    version: str
    previous_version: str | None
    paths: int
    operations: int
    validation_errors: tuple[str, ...]
    diff: ApiDiff
    verdict: Verdict
    changelog: str
    document_file: str
    changelog_file: str
    postman_file: str

    @property
    def valid(self) -> bool:
        return not self.validation_errors

    def release_gate(self) -> ReleaseGate:
        """What `release_image` checks before it tags this build: valid, and no breaking change unless a major bump."""
        reasons = [f"invalid OpenAPI document: {'; '.join(self.validation_errors[:3])}"] if not self.valid else []
        if not self.verdict.passed:
            reasons.append(self.verdict.description)
        return ReleaseGate(name="api_docs", digest=self.digest, passed=not reasons, reason="; ".join(reasons))


def diff_table(diff: ApiDiff) -> str:
    """The diff as a Markdown table (for metadata)."""
    if not diff.changes:
        return "No change."
    rows = [f"| {'yes' if c.breaking else 'no'} | {c.kind} | `{c.where}` | {c.detail} |" for c in diff.changes]
    return "\n".join(["| breaking | kind | where | detail |", "| --- | --- | --- | --- |", *rows])


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, suffix=".tmp") as handle:
        handle.write(text)
    Path(handle.name).replace(path)


def document_build(
    engine: DockerEngine,
    registry: RegistryClient,
    image: BuiltImage,
    folder: Path,
    today: date | None = None,
    log: Log = print,
) -> ApiDocsReport:
    """Read, validate and compare the backend build `image`'s document; write it, the changelog entry and the
    Postman collection under `folder/<candidate tag>/` (documents by digest under `folder/documents/`)."""
    cache = folder / "documents"
    document = image_document(engine, image.ref, image.digest, cache)
    errors = validation_errors(document)
    previous = read_previous_release(engine, registry, image.repository, image.version, log=log, cache=cache)
    diff = compare_documents(previous.document if previous else None, document)
    verdict = judge(diff, image.version, previous.version if previous else None)
    entry = changelog_entry(image.version, today or date.today(), diff, previous.version if previous else None)
    target = folder / image.tag
    files = {
        "openapi.json": json.dumps(document, indent=2, sort_keys=False) + "\n",
        "changelog.md": entry,
        "postman_collection.json": json.dumps(postman_collection(document), indent=2) + "\n",
    }
    for name, text in files.items():
        _write(target / name, text)
    log(f"{image.ref}: {len(diff.breaking)} breaking and {len(diff.changes) - len(diff.breaking)} other change(s); files in {target}")  # fmt: skip
    return ApiDocsReport(
        image_ref=image.ref,
        digest=image.digest,
        version=image.version,
        previous_version=previous.version if previous else None,
        paths=len(document.get("paths") or {}),
        operations=sum(1 for _ in operations(document)),
        validation_errors=tuple(errors),
        diff=diff,
        verdict=verdict,
        changelog=entry,
        document_file=str(target / "openapi.json"),
        changelog_file=str(target / "changelog.md"),
        postman_file=str(target / "postman_collection.json"),
    )


def add_to_changelog(changelog: Path, entry: str) -> None:
    """Prepend `entry` to the changelog file (replacing an entry of the same version); created when missing."""
    current = changelog.read_text() if changelog.exists() else "# API changelog\n"
    _write(changelog, prepend_entry(current, entry))


def main(argv: list[str] | None = None) -> int:
    """`python -m shop_ops.release.api_docs changelog ENTRY [CHANGELOG]`: the entry api_docs wrote for a build
    (`<state>/api-docs/<version>-<sha>/changelog.md`) into docs/api/CHANGELOG.md (`make api-changelog`)."""
    parser = argparse.ArgumentParser(prog="python -m shop_ops.release.api_docs")
    commands = parser.add_subparsers(dest="command", required=True)
    command = commands.add_parser("changelog", help="prepend a build's changelog entry to the API changelog")
    command.add_argument("entry", type=Path, help="the entry api_docs wrote (changelog.md of a build)")
    command.add_argument("changelog", type=Path, nargs="?", default=Path("docs/api/CHANGELOG.md"))
    args = parser.parse_args(argv)
    if not args.entry.is_file():
        parser.exit(
            2,
            f"{args.entry} does not exist: materialize api_docs for this build first "
            "(the build_images job, or check_pushed_build for a pushed build)\n",
        )
    add_to_changelog(args.changelog, args.entry.read_text())
    print(f"{args.changelog}: added {args.entry.read_text().splitlines()[0].removeprefix('## ')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
