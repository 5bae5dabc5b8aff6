"""The API docs' rules without services: what a breaking change is, the verdict, the changelog entry, the Postman
collection, the previous release, the release gate and check_pushed_build's run config."""

from __future__ import annotations

import copy
import json
from datetime import date
from typing import Any

import dagster as dg
import pytest

from shop_ops.assets.images import PUSHED_TAG, pushed_build_launch
from shop_ops.jobs import build_images, check_pushed_build
from shop_ops.release.api_docs import (
    POSTMAN_SCHEMA,
    changelog_entry,
    compare_documents,
    judge,
    main,
    postman_collection,
    prepend_entry,
    previous_release_tag,
    validation_errors,
)
from shop_ops.release.images import BuiltImage, ReleaseBlocked, ReleaseGate, release_image


def ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def json_body(schema: dict[str, Any], required: bool = True) -> dict[str, Any]:
    return {"required": required, "content": {"application/json": {"schema": schema}}}


def ok(schema: dict[str, Any]) -> dict[str, Any]:
    return {"200": {"description": "OK", "content": {"application/json": {"schema": schema}}}}


def base_document() -> dict[str, Any]:
    """A small shop API: products (with a nullable field and an enum), carts with a body and parameters."""
    return {
        "openapi": "3.1.0",
        "info": {"title": "Shop API", "version": "1.0.0"},
        "paths": {
            "/api/products": {
                "get": {
                    "summary": "List Products",
                    "tags": ["catalog"],
                    "parameters": [
                        {"name": "q", "in": "query", "required": False, "schema": {"type": "string"}},
                        {
                            "name": "sort",
                            "in": "query",
                            "required": False,
                            "schema": {"type": "string", "enum": ["name", "price"]},
                        },
                    ],
                    "responses": ok({"type": "array", "items": ref("Product")}),
                }
            },
            "/api/products/{product_id}": {
                "get": {
                    "summary": "Get Product",
                    "tags": ["catalog"],
                    "parameters": [
                        {"name": "product_id", "in": "path", "required": True, "schema": {"type": "integer"}}
                    ],
                    "responses": ok(ref("Product")),
                },
                "delete": {
                    "summary": "Delete Product",
                    "tags": ["admin"],
                    "security": [{"AdminToken": []}],
                    "parameters": [
                        {"name": "product_id", "in": "path", "required": True, "schema": {"type": "integer"}}
                    ],
                    "responses": {"204": {"description": "Deleted"}},
                },
            },
            "/api/carts/{cart_id}/items": {
                "post": {
                    "summary": "Add Item",
                    "tags": ["cart"],
                    "parameters": [{"name": "cart_id", "in": "path", "required": True, "schema": {"type": "string"}}],
                    "requestBody": json_body(ref("AddItem")),
                    "responses": ok(ref("Cart")),
                }
            },
        },
        "components": {
            "schemas": {
                "Product": {
                    "type": "object",
                    "required": ["id", "name", "price_cents", "status"],
                    "properties": {
                        "id": {"type": "integer"},
                        "name": {"type": "string"},
                        "price_cents": {"type": "integer"},
                        "status": {"type": "string", "enum": ["active", "retired"]},
                        "note": {"anyOf": [{"type": "string"}, {"type": "null"}]},
                    },
                },
                "AddItem": {
                    "type": "object",
                    "required": ["product_id"],
                    "properties": {
                        "product_id": {"type": "integer"},
                        "quantity": {"type": "integer", "default": 1},
                        "gift": {"anyOf": [{"type": "boolean"}, {"type": "null"}]},
                        "channel": {"type": "string", "enum": ["web", "app"]},
                    },
                    "examples": [{"product_id": 1, "quantity": 2}],
                },
                "Cart": {
                    "type": "object",
                    "required": ["id", "lines"],
                    "properties": {"id": {"type": "string"}, "lines": {"type": "array", "items": {"type": "object"}}},
                },
            },
            "securitySchemes": {"AdminToken": {"type": "http", "scheme": "bearer"}},
        },
    }


def schemas(doc: dict[str, Any]) -> dict[str, Any]:
    return doc["components"]["schemas"]


def changed(edit) -> dict[str, Any]:
    doc = base_document()
    edit(doc)
    return doc


BREAKING = {
    "removed_path": lambda d: d["paths"].pop("/api/carts/{cart_id}/items"),
    "removed_operation": lambda d: d["paths"]["/api/products/{product_id}"].pop("delete"),
    "removed_response_field": lambda d: schemas(d)["Product"]["properties"].pop("price_cents"),
    "optional_response_field": lambda d: schemas(d)["Product"]["required"].remove("name"),
    "changed_response_type": lambda d: schemas(d)["Product"]["properties"].update(id={"type": "string"}),
    "new_required_request_field": lambda d: schemas(d)["AddItem"]["required"].append("quantity"),
    "new_required_parameter": lambda d: d["paths"]["/api/products"]["get"]["parameters"].append(
        {"name": "Idempotency-Key", "in": "header", "required": True, "schema": {"type": "string"}}
    ),
    "narrowed_request_type": lambda d: schemas(d)["AddItem"]["properties"].update(gift={"type": "boolean"}),
    "narrowed_request_enum": lambda d: schemas(d)["AddItem"]["properties"]["channel"]["enum"].remove("app"),
    "new_required_request_body": lambda d: d["paths"]["/api/products/{product_id}"]["delete"].update(
        requestBody=json_body({"type": "object"})
    ),
    "removed_response": lambda d: d["paths"]["/api/products/{product_id}"]["delete"].update(responses={}),
}


@pytest.mark.parametrize("kind", sorted(BREAKING))
def test_each_kind_of_breaking_change_is_found(kind):
    diff = compare_documents(base_document(), changed(BREAKING[kind]))
    assert kind in {c.kind for c in diff.breaking}, diff.changes
    assert not judge(diff, "1.1.0", "1.0.0").passed
    assert judge(diff, "2.0.0", "1.0.0").passed  # a major version bump allows it


def test_removed_response_field_names_every_operation_and_the_field_path():
    diff = compare_documents(base_document(), changed(BREAKING["removed_response_field"]))
    assert {c.where for c in diff.breaking} == {
        "GET /api/products -> 200[].price_cents",
        "GET /api/products/{product_id} -> 200.price_cents",
    }
    verdict = judge(diff, "1.0.1", "1.0.0")
    assert "2 breaking change(s) since 1.0.0" in verdict.description and "major version" in verdict.description


COMPATIBLE = {
    "added_operation": lambda d: d["paths"]["/api/products"].update(post={"summary": "Create", "responses": ok({})}),
    "added_response_field": lambda d: schemas(d)["Product"]["properties"].update(sku={"type": "string"}),
    "added_request_field": lambda d: schemas(d)["AddItem"]["properties"].update(note={"type": "string"}),
    "added_parameter": lambda d: d["paths"]["/api/products"]["get"]["parameters"].append(
        {"name": "page", "in": "query", "required": False, "schema": {"type": "integer"}}
    ),
    "widened_request_type": lambda d: schemas(d)["AddItem"]["properties"].update(
        product_id={"anyOf": [{"type": "integer"}, {"type": "string"}]}
    ),
    "widened_request_enum": lambda d: schemas(d)["AddItem"]["properties"]["channel"]["enum"].append("kiosk"),
    "changed_response_enum": lambda d: schemas(d)["Product"]["properties"]["status"]["enum"].append("draft"),
    "narrowed_response_type": lambda d: schemas(d)["Product"]["properties"].update(note={"type": "string"}),
    "added_response": lambda d: d["paths"]["/api/products"]["get"]["responses"].update(
        {"429": {"description": "Too many requests"}}
    ),
    "removed_parameter": lambda d: d["paths"]["/api/products"]["get"]["parameters"].pop(1),
    "required_response_field": lambda d: schemas(d)["Product"]["required"].append("note"),
}


@pytest.mark.parametrize("kind", sorted(COMPATIBLE))
def test_compatible_changes_are_listed_but_pass(kind):
    diff = compare_documents(base_document(), changed(COMPATIBLE[kind]))
    assert not diff.breaking, diff.breaking
    if kind != "required_response_field":  # a field that is now always present: nothing a client notices
        assert diff.changes
    assert judge(diff, "1.0.1", "1.0.0").passed


def test_the_same_document_has_no_change_and_refs_are_followed_through_cycles():
    doc = base_document()
    schemas(doc)["Cart"]["properties"]["parent"] = ref("Cart")  # a recursive schema
    assert compare_documents(doc, copy.deepcopy(doc)).changes == ()


def test_first_document_lists_every_operation_as_added_and_passes():
    diff = compare_documents(None, base_document())
    assert [c.kind for c in diff.changes] == ["added_operation"] * 4
    assert judge(diff, "1.0.0", None).passed


def test_changelog_entry_and_prepending_it():
    diff = compare_documents(base_document(), changed(lambda d: (BREAKING["removed_operation"](d), COMPATIBLE["added_response_field"](d))))  # fmt: skip
    entry = changelog_entry("2.0.0", date(2026, 12, 1), diff, "1.0.0")
    assert entry.startswith("## 2.0.0 (2026-12-01)\n\nCompared with 1.0.0.\n")
    assert "### Breaking\n\n- `DELETE /api/products/{product_id}`: operation removed" in entry
    assert "### Added\n\n- `GET /api/products -> 200[].sku`: new response field" in entry
    head = "# API changelog\n\nNewest first.\n"
    first = prepend_entry(head, changelog_entry("1.0.0", date(2026, 11, 1), compare_documents(None, base_document()), None))  # fmt: skip
    both = prepend_entry(first, entry)
    assert both.index("## 2.0.0") < both.index("## 1.0.0") and both.startswith(head)
    again = prepend_entry(both, entry)  # the same version again replaces its entry
    assert again.count("## 2.0.0") == 1 and again.count("## 1.0.0") == 1


def test_make_api_changelog_prepends_a_builds_entry(tmp_path, capsys):
    changelog = tmp_path / "CHANGELOG.md"
    changelog.write_text("# API changelog\n\nIntro.\n\n## 1.0.0 (2026-11-01)\n\nFirst published document.\n")
    entry = tmp_path / "changelog.md"
    entry.write_text(changelog_entry("1.1.0", date(2026, 12, 1), compare_documents(base_document(), base_document()), "1.0.0"))  # fmt: skip
    assert main(["changelog", str(entry), str(changelog)]) == 0
    text = changelog.read_text()
    assert text.startswith("# API changelog\n\nIntro.\n\n## 1.1.0 (2026-12-01)\n\nCompared with 1.0.0.\n\nNo change")
    assert text.index("## 1.1.0") < text.index("## 1.0.0")
    with pytest.raises(SystemExit, match="2"):
        main(["changelog", str(tmp_path / "missing.md"), str(changelog)])
    assert "materialize api_docs" in capsys.readouterr().err


def test_postman_collection_has_every_operation_with_path_variables_body_and_bearer_auth():
    collection = postman_collection(base_document(), base_url="https://shop.example")
    assert collection["info"]["schema"] == POSTMAN_SCHEMA
    assert collection["variable"][0] == {"key": "baseUrl", "value": "https://shop.example", "type": "string"}
    requests = {item["name"]: item["request"] for folder in collection["item"] for item in folder["item"]}
    assert set(requests) == {"List Products", "Get Product", "Delete Product", "Add Item"}
    assert [f["name"] for f in collection["item"]] == ["catalog", "admin", "cart"]
    add = requests["Add Item"]
    assert add["method"] == "POST" and add["url"]["path"] == ["api", "carts", ":cart_id", "items"]
    assert add["url"]["variable"] == [{"key": "cart_id", "value": ""}]
    assert json.loads(add["body"]["raw"]) == {"product_id": 1, "quantity": 2}
    assert requests["Delete Product"]["auth"]["type"] == "bearer"
    assert "auth" not in requests["List Products"]
    assert [q["key"] for q in requests["List Products"]["url"]["query"]] == ["q", "sort"]


def test_validation_reports_an_invalid_document():
    assert validation_errors(base_document()) == []
    broken = base_document()
    del broken["paths"]["/api/products"]["get"]["responses"]["200"]["description"]
    assert validation_errors(broken)


@pytest.mark.parametrize(
    ("tags", "version", "previous"),
    [
        (["1.0.0", "1.2.0", "1.10.0", "2.0.0", "1.3.0-abc1234", "latest"], "1.11.0", "1.10.0"),
        (["1.0.0", "1.2.0"], "1.2.0", "1.0.0"),  # the build's own version is not its previous release
        (["1.3.0-abc1234"], "1.3.0", None),
        ([], "0.1.0", None),
    ],
)
def test_previous_release_is_the_highest_lower_version(tags, version, previous):
    assert previous_release_tag(tags, version) == previous


def _image(digest: str = "sha256:1") -> BuiltImage:
    return BuiltImage(name="backend", registry="r", repository="shop/backend", tag="1.1.0-abc", digest=digest,
                      image_id="i", version="1.1.0", git_commit="abc", size_mb=10.0, layers=2, user="10001:10001",
                      healthcheck=True, labels={}, build_seconds=1.0)  # fmt: skip


class NoRegistry:
    def __getattr__(self, name):
        raise AssertionError(f"registry.{name} called for a blocked image")


@pytest.mark.parametrize(
    ("gate", "message"),
    [
        (ReleaseGate("api_docs", "sha256:1", False, "2 breaking change(s)"), "api_docs: 2 breaking change"),
        (ReleaseGate("api_docs", "sha256:other", True), "judged sha256:other, not this build"),
    ],
)
def test_release_gate_blocks_before_the_registry_is_touched(gate, message):
    with pytest.raises(ReleaseBlocked, match=message):
        release_image(NoRegistry(), _image(), budget_mb=100, gates=[gate])  # type: ignore[arg-type]


def test_check_pushed_build_takes_the_tag_once_for_both_images():
    run_config, tags = pushed_build_launch("1.2.0-abc1234")
    assert tags == {PUSHED_TAG: "1.2.0-abc1234"}
    mapped = check_pushed_build.config.resolve_from_unvalidated_config(run_config)  # type: ignore[union-attr]
    assert mapped["ops"] == {
        f"{name}_image": {"config": {"pushed_tag": "1.2.0-abc1234"}} for name in ("backend", "frontend")
    }
    assert build_images.selection == check_pushed_build.selection == dg.AssetSelection.groups("images", "docs")
