"""Read a Terraform root and the local modules it calls as plain data, for pricing and static checks.

No Terraform binary or provider can be had on our machines, so this reads the HCL with
python-hcl2 and evaluates only the expressions the cost estimate needs: literals, `var.x`,
`local.x`, `[]`, templates built from them, `a ? b : c`, `coalesce(...)` and `toset(x)` over those. A module
call's arguments become the module's variables (the rest take their `variable` defaults).
Anything else (`module.x.output`, data sources, functions, `count.index`) is left as an
`Unresolved` value and reported with the resource, never guessed.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hcl2

PARSE_OPTIONS = hcl2.SerializationOptions(strip_string_quotes=True, with_comments=False, explicit_blocks=False)


# --- parsing helpers (shared with tests/infra/test_terraform_static.py) ---------------------------


def tf_files(folder: Path) -> list[Path]:
    """Every .tf file under a folder, recursively, provider caches excluded."""
    return sorted(p for p in folder.rglob("*.tf") if ".terraform" not in p.parts)


def folder_files(folder: Path) -> list[Path]:
    """The .tf files of one root or module folder (not its subfolders)."""
    return sorted(folder.glob("*.tf"))


@functools.cache
def parse(path: Path) -> dict[str, Any]:
    """One file as python-hcl2 reads it: string literals unquoted, no comments or block markers.

    Expressions stay HCL text inside `${...}` (`"${merge(var.tags, {Component = \"x\"})}"`).
    """
    with path.open() as f:
        return hcl2.load(f, serialization_options=PARSE_OPTIONS)


def text(value: Any) -> str:
    """An attribute's value as the parser gives it, for reading expressions: `${...}` unwrapped."""
    s = str(value)
    match = re.fullmatch(r"\$\{(.*)\}", s, re.S)
    return match.group(1) if match else s


def blocks(doc: dict[str, Any], kind: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """(label, body) of every top-level block of one kind (for `resource`: type -> {name: body})."""
    for entry in doc.get(kind, []):
        yield from entry.items()


def resources(paths: list[Path]) -> Iterator[tuple[Path, str, str, dict[str, Any]]]:
    """(file, type, name, body) of every resource in these files."""
    for path in paths:
        for rtype, named in blocks(parse(path), "resource"):
            for name, body in named.items():
                yield path, rtype, name, body


def merged(folder: Path, kind: str) -> dict[str, Any]:
    """All blocks of one kind in a root or module folder, label -> body (locals: name -> value)."""
    found: dict[str, Any] = {}
    for path in folder_files(folder):
        doc = parse(path)
        if kind == "locals":
            for entry in doc.get("locals", []):
                found.update(entry)
        else:
            found.update(dict(blocks(doc, kind)))
    return found


def single(value: Any) -> dict[str, Any]:
    """A nested block's body (the parser gives blocks as lists of bodies)."""
    assert isinstance(value, list) and len(value) == 1, value
    return value[0]


def component_of(tags: Any) -> str | None:
    """The literal Component of `merge(var.tags, { Component = "x", ... })` (or local.tags in a root)."""
    expr = text(tags)
    if not re.match(r"merge\((var|local)\.tags\s*,", expr):
        return None
    match = re.search(r"""['"]?Component['"]?\s*[:=]\s*['"]([A-Za-z0-9-]+)['"]""", expr)
    return match.group(1) if match else None


# --- evaluation ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Unresolved:
    """An expression this reader does not evaluate, kept as its HCL text."""

    expression: str


@dataclass(frozen=True)
class Resource:
    """One resource of a loaded root: its attributes with the values that could be worked out."""

    type: str
    name: str
    module: str  # "" in the root, else "module.a" or "module.a.module.b"
    attributes: dict[str, Any]  # values evaluated where possible, `Unresolved` elsewhere
    raw: dict[str, Any]  # the body as the parser gave it
    count: int | Unresolved  # `count`, or the size of `for_each`; 1 without either
    file: Path
    unresolved: dict[str, str] = field(default_factory=dict)  # top-level attribute -> HCL text

    @property
    def address(self) -> str:
        local = f"{self.type}.{self.name}"
        return f"{self.module}.{local}" if self.module else local

    @property
    def component(self) -> str | None:
        return component_of(self.raw["tags"]) if "tags" in self.raw else None


_ATOM = r'(?:(?:var|local)\.\w+|-?\d+(?:\.\d+)?|true|false|null|\[\]|"[^"]*")'


class Scope:
    """The `var` and `local` values of one module instance; locals are evaluated on first use."""

    def __init__(self, variables: dict[str, Any], local_exprs: dict[str, Any]) -> None:
        self.variables = variables
        self._local_exprs = local_exprs
        self._locals: dict[str, Any] = {}
        self._evaluating: set[str] = set()

    def local(self, name: str) -> Any:
        if name in self._locals:
            return self._locals[name]
        if name not in self._local_exprs or name in self._evaluating:
            return Unresolved(f"local.{name}")
        self._evaluating.add(name)
        value = self.evaluate(self._local_exprs[name])
        self._evaluating.discard(name)
        self._locals[name] = value
        return value

    def evaluate(self, value: Any) -> Any:
        """A parsed value with what can be worked out evaluated; `Unresolved` for the rest."""
        if isinstance(value, dict):
            return {self._key(k): self.evaluate(v) for k, v in value.items() if not k.startswith("__")}
        if isinstance(value, list):
            return [self.evaluate(v) for v in value]
        if not isinstance(value, str):
            return value
        match = re.fullmatch(r"\$\{(.*)\}", value, re.S)
        if match and "${" not in match.group(1):
            return self.expression(match.group(1).strip())
        if "${" in value:
            return self._template(value)
        return value

    def _key(self, key: str) -> Any:
        value = self.evaluate(key)
        return value if isinstance(value, str) else key

    def _template(self, value: str) -> Any:
        # split() alternates literal text and the insides of ${...}: even indexes are literal.
        pieces = re.split(r"\$\{([^}]*)\}", value)
        parts = []
        for i, piece in enumerate(pieces):
            if i % 2 == 0:
                parts.append(piece)
            else:
                result = self.expression(piece.strip())
                if isinstance(result, Unresolved) or isinstance(result, (dict, list)) or result is None:
                    return Unresolved(value)
                parts.append(str(result).lower() if isinstance(result, bool) else str(result))
        return "".join(parts)

    def expression(self, expr: str) -> Any:
        """One HCL expression: an atom, or `a ? b : c`, `toset(a)`, `coalesce(a, ...)` over atoms; else Unresolved."""
        if re.fullmatch(_ATOM, expr):
            return self._atom(expr)
        match = re.fullmatch(rf"({_ATOM})\s*\?\s*({_ATOM})\s*:\s*({_ATOM})", expr)
        if match:
            condition = self._atom(match.group(1))
            if isinstance(condition, bool):
                return self._atom(match.group(2) if condition else match.group(3))
            return Unresolved(expr)
        match = re.fullmatch(rf"toset\(\s*({_ATOM})\s*\)", expr)
        if match:
            value = self._atom(match.group(1))
            return list(dict.fromkeys(value)) if isinstance(value, list) else Unresolved(expr)
        match = re.fullmatch(rf"coalesce\(\s*({_ATOM}(?:\s*,\s*{_ATOM})*)\s*\)", expr)
        if match:
            for arg in re.split(r"\s*,\s*", match.group(1)):
                value = self._atom(arg)
                if isinstance(value, Unresolved):
                    return Unresolved(expr)
                if value is not None and value != "":
                    return value
            return Unresolved(expr)
        return Unresolved(expr)

    def _atom(self, atom: str) -> Any:
        if atom.startswith("var."):
            name = atom[4:]
            return self.variables[name] if name in self.variables else Unresolved(atom)
        if atom.startswith("local."):
            return self.local(atom[6:])
        if atom in ("true", "false"):
            return atom == "true"
        if atom == "null":
            return None
        if atom == "[]":
            return []
        if atom.startswith('"'):
            return self._template(atom[1:-1]) if "${" in atom else atom[1:-1]
        return float(atom) if "." in atom else int(atom)


def _unresolved_in(value: Any) -> bool:
    if isinstance(value, Unresolved):
        return True
    if isinstance(value, dict):
        return any(_unresolved_in(v) for v in value.values())
    if isinstance(value, list):
        return any(_unresolved_in(v) for v in value)
    return False


def _count(body: dict[str, Any], scope: Scope) -> int | Unresolved:
    if "count" in body:
        value = scope.evaluate(body["count"])
        return value if isinstance(value, int) and not isinstance(value, bool) else Unresolved(text(body["count"]))
    if "for_each" in body:
        value = scope.evaluate(body["for_each"])
        if isinstance(value, (dict, list)) and not _unresolved_in(value):
            return len(value)
        return Unresolved(text(body["for_each"]))
    return 1


@dataclass
class Loaded:
    """A root's resources, and the module calls that could not be followed (address -> why)."""

    resources: list[Resource]
    skipped_modules: dict[str, str]


def load(root: Path, variables: dict[str, Any] | None = None) -> Loaded:
    """A root and every local module it calls (recursively), as resources with evaluated attributes.

    `variables` overrides the root's `variable` defaults (what a tfvars file would set).
    """
    loaded = Loaded(resources=[], skipped_modules={})
    _load_folder(root.resolve(), _variables(root, variables or {}), "", loaded)
    return loaded


def _variables(folder: Path, given: dict[str, Any]) -> dict[str, Any]:
    values = {name: body["default"] for name, body in merged(folder, "variable").items() if "default" in body}
    values.update(given)
    return values


def _load_folder(folder: Path, variables: dict[str, Any], module: str, loaded: Loaded) -> None:
    scope = Scope(variables, merged(folder, "locals"))
    for path, rtype, name, body in resources(folder_files(folder)):
        attributes = {k: scope.evaluate(v) for k, v in body.items() if not k.startswith("__")}
        unresolved = {k: text(body[k]) for k, v in attributes.items() if _unresolved_in(v)}
        loaded.resources.append(
            Resource(
                type=rtype,
                name=name,
                module=module,
                attributes=attributes,
                raw=body,
                count=_count(body, scope),
                file=path,
                unresolved=unresolved,
            )
        )
    for name, call in merged(folder, "module").items():
        address = f"{module}.module.{name}" if module else f"module.{name}"
        source = scope.evaluate(call.get("source"))
        if not isinstance(source, str) or not source.startswith(("./", "../")):
            loaded.skipped_modules[address] = f"source {call.get('source')!r} is not a local folder"
            continue
        count = _count(call, scope)
        if isinstance(count, Unresolved):
            loaded.skipped_modules[address] = f"count/for_each {count.expression!r} could not be evaluated"
            continue
        if count == 0:
            continue
        if count > 1:
            loaded.skipped_modules[address] = f"count/for_each of {count} instances is not read here"
            continue
        meta = {"source", "count", "for_each", "providers", "depends_on"}
        arguments = {k: scope.evaluate(v) for k, v in call.items() if k not in meta and not k.startswith("__")}
        target = (folder / source).resolve()
        _load_folder(target, _variables(target, arguments), address, loaded)
