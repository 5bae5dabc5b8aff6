"""The `secrets` resource: secret files of mode 0600 under the state folder (local) or AWS Secrets Manager (aws).

One resource, two backends chosen by `backend`; callers never ask which. Every value read is
checked (a placeholder or known default is refused, naming the secret), remembered by the one
redactor (shop_ops/services/redaction.py: masked in everything the pipeline logs or stores) and
recorded by NAME (name, backend, action, time, run; never the value): in `accessed` for this process,
and, given a `ledger`, in the release ledger's `secret_access` table, which every run shares and the
audit trail reads (shop_ops/security/audit.py). A read or write that cannot be recorded there fails.

`files`: `<state>/secrets/<name>` as `shop-ops local up` writes them (`<env>-db-password`,
`<env>-admin-token`, `<env>-payment-webhook-secret`, `<env>-redis-password`, `<env>-redis-admin-password`,
`<env>-replication-password`, `logs-reader.pgpass`), plus `paths` for the ones kept elsewhere (the
backup key beside the PostgreSQL folders). A file readable by others, or by a group other than
`shared_group` (the shop containers' group, which mounts some of them), is refused.
`aws`: Secrets Manager through AwsResource, read at run time and never written to disk; the
database secrets are the JSON RDS writes (`{"username", "password", ...}`), one ARN per environment.
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import dagster as dg
from botocore.exceptions import BotoCoreError, ClientError
from pydantic import Field, PrivateAttr

from shop_ops.resources.aws import AwsResource
from shop_ops.resources.ledger import LedgerError, LedgerResource, ReleaseLedger
from shop_ops.services.files import write_private
from shop_ops.services.redaction import KNOWN_SECRETS, accept_secret

Backend = Literal["files", "aws"]


class SecretsError(RuntimeError):
    """A secret cannot be read or written; the message names the secret (never its value) and the fix."""


@dataclass(frozen=True)
class SecretAccess:
    """One use of a secret: which (by name), where, read or written, when, in which run. Never the value."""

    name: str
    backend: Backend
    action: Literal["read", "write"]
    at: datetime
    run_id: str | None = None

    def as_dict(self) -> dict[str, str | None]:
        return {"name": self.name, "backend": self.backend, "action": self.action, "at": self.at.isoformat(),
                "run_id": self.run_id}  # fmt: skip


def check_private(path: Path, shared_group: int | None = None) -> None:
    """SecretsError unless `path` is readable by its owner only (or also by `shared_group`, when given)."""
    mode = path.stat().st_mode
    st_gid = path.stat().st_gid
    who = []
    if mode & 0o007:
        who.append("others")
    if mode & 0o070 and (shared_group is None or st_gid != shared_group):
        who.append(f"group {st_gid}")
    if who:
        raise SecretsError(
            f"secret file {path} is readable by {' and '.join(who)} (mode {stat.S_IMODE(mode):o}): chmod 600 {path}"
        )


class FileSecrets:
    """Secret files under one folder (plus named paths elsewhere)."""

    def __init__(self, folder: Path, paths: dict[str, Path] | None = None, shared_group: int | None = None) -> None:
        self.folder, self.paths, self.shared_group = folder, dict(paths or {}), shared_group

    def path(self, name: str) -> Path:
        if name in self.paths:
            return self.paths[name]
        if not name or "/" in name or name.startswith("."):
            raise SecretsError(f"{name!r} is not a secret name: use a file name under {self.folder}")
        return self.folder / name

    def read(self, name: str) -> str:
        path = self.path(name)
        try:
            check_private(path, self.shared_group)
            return path.read_text().strip()
        except FileNotFoundError:
            raise SecretsError(
                f"secret {name}: {path} does not exist; `shop-ops local up` makes it, or write it with mode 600"
            ) from None
        except OSError as exc:
            raise SecretsError(f"secret {name}: cannot read {path} ({exc.strerror})") from None

    def write(self, name: str, value: str) -> None:
        path = self.path(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        # Keep a deliberate group grant (the shop containers' group reads the files they mount).
        keep_group = path.exists() and self.shared_group is not None and path.stat().st_gid == self.shared_group
        write_private(path, value + "\n")
        if keep_group and os.geteuid() == 0:
            os.chown(path, 0, self.shared_group)
            path.chmod(0o640)


class AwsSecrets:
    """Secrets Manager: SecretString values, read at run time (no cache, nothing on disk)."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def read(self, name: str) -> str:
        try:
            return self.client.get_secret_value(SecretId=name)["SecretString"]
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "?")
            raise SecretsError(
                f"secret {name}: Secrets Manager answered {code}; check the ARN and secretsmanager:GetSecretValue"
            ) from None
        except (BotoCoreError, KeyError) as exc:
            raise SecretsError(f"secret {name}: {type(exc).__name__} from Secrets Manager") from None

    def write(self, name: str, value: str) -> None:
        try:
            self.client.put_secret_value(SecretId=name, SecretString=value)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "?")
            raise SecretsError(
                f"secret {name}: Secrets Manager answered {code}; check the ARN and secretsmanager:PutSecretValue"
            ) from None


class SecretsResource(dg.ConfigurableResource):
    """Secrets by name: `files` (local) or `aws` (Secrets Manager); reads recorded by name in `accessed` and
    in the ledger's `secret_access` (with the run's id)."""

    backend: Backend = "files"
    folder: str = Field(default="", description="files: the state's secrets/ folder")
    paths: dict[str, str] = Field(default_factory=dict, description="files: names kept outside `folder`")
    shared_group: int | None = Field(default=None, description="files: a group allowed to read (shop containers)")
    database_user: str = Field(default="shop", description="files: the database role of the password files")
    region: str = Field(default="", description="aws: the region of the secrets")
    endpoint_url: str | None = Field(default=None, description="aws: another endpoint (tests: moto)")
    database_secrets: dict[str, str] = Field(default_factory=dict, description="aws: environment -> secret ARN")
    ledger: LedgerResource | None = Field(
        default=None, description="where every read and write is recorded by name for the audit trail; None: nowhere"
    )

    _accessed: list[SecretAccess] = PrivateAttr(default_factory=list)
    _run_id: str | None = PrivateAttr(default=None)
    _audit: ReleaseLedger | None = PrivateAttr(default=None)  # `ledger`, opened at the first access

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        self._run_id = context.run.run_id if context.run else None  # None outside a run (a sensor, the command line)

    @property
    def accessed(self) -> list[SecretAccess]:
        """Every read and write through this resource in this process, by name (never value)."""
        return list(self._accessed)

    def _store(self) -> FileSecrets | AwsSecrets:
        if self.backend == "aws":
            if not self.region:
                raise SecretsError("the aws secrets backend needs `region` (aws.region in config/aws.yaml)")
            return AwsSecrets(AwsResource(region=self.region, endpoint_url=self.endpoint_url).client("secretsmanager"))
        if not self.folder:
            raise SecretsError("the files secrets backend needs `folder` (the state's secrets/ folder)")
        return FileSecrets(Path(self.folder), {k: Path(v) for k, v in self.paths.items()}, self.shared_group)

    def _record(self, name: str, action: Literal["read", "write"]) -> None:
        access = SecretAccess(name, self.backend, action, datetime.now(UTC), self._run_id)
        if self.ledger is not None:
            try:
                if self._audit is None:
                    self._audit = self.ledger.open()
                self._audit.record_secret_access(name, self.backend, action, access.at.timestamp(), self._run_id)
            except LedgerError as exc:  # an access the audit trail would miss is refused
                raise SecretsError(f"secret {name}: its {action} could not be recorded for the audit ({exc})") from None
        self._accessed.append(access)

    def get(self, name: str) -> str:
        """The secret `name` (a file name, or a secret's ARN or name on aws); refused if a placeholder."""
        value = self._store().read(name)
        self._record(name, "read")
        return accept_secret(f"secret {name}", value)

    def put(self, name: str, value: str) -> None:
        """Store a new value for `name` (rotation); remembered for redaction before it is written."""
        accept_secret(f"new value of secret {name}", value)
        self._store().write(name, value)
        self._record(name, "write")

    def database_secret_name(self, environment: str) -> str:
        if self.backend == "files":
            return f"{environment}-db-password"
        try:
            return self.database_secrets[environment]
        except KeyError:
            raise SecretsError(
                f"no database secret for environment {environment!r}: set environments.{environment}.database_secret_arn"
            ) from None

    def database_credentials(self, environment: str) -> tuple[str, str]:
        """(user, password) of the shop's database role in `environment`."""
        name = self.database_secret_name(environment)
        if self.backend == "files":
            return self.database_user, self.get(name)
        raw = self.get(name)
        try:
            document = json.loads(raw)
            user, password = document["username"], document["password"]
        except (ValueError, KeyError, TypeError):
            raise SecretsError(
                f'secret {name} is not the JSON RDS writes ({{"username": ..., "password": ...}}): fix its value'
            ) from None
        return user, accept_secret(f"secret {name} (password)", password)

    def put_database_credentials(self, environment: str, user: str, password: str) -> None:
        """Store the shop role's new credentials (rotation): the password file, or the RDS-style JSON on aws."""
        name = self.database_secret_name(environment)
        if self.backend == "files":
            self.put(name, password)
            return
        accept_secret(f"new password of secret {name}", password)
        document = json.loads(self._store().read(name) or "{}")
        KNOWN_SECRETS.add(str(document.get("password") or ""))
        self.put(name, json.dumps({**document, "username": user, "password": password}))
