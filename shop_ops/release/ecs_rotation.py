"""A database login rotation's steps on one aws environment: Secrets Manager rotates the app secret, then the ECS service restarts onto it.

AWS's alternating-users scheme, run by AWS's own rotation function
(`SecretsManagerRDSPostgreSQLRotationMultiUser`, infra/terraform/modules/secrets): the app secret
holds one of two database users (`shop_app` / `shop_app_clone`); each rotation gives the *other*
user a new password (logging in with the master secret named by its `masterarn`), tests it, and
moves AWSCURRENT to it. The ECS tasks read `username` and `password` from the secret when they
start, so afterwards a forced new deployment of the service (same task definition) restarts them
as the new user. These are the steps `shop_ops.security.rotation.rotate` asks for
(`LoginRotationSteps`):

- issue: `RotateSecret` on the app secret, then poll `DescribeSecret` until the version it started
  carries AWSCURRENT; a timeout names the secret and where to look (the rotation function's
  CloudWatch logs), and nothing is redeployed;
- restart_on: `UpdateService --force-new-deployment`, waited for until steady with the release's
  own check (`ecs.wait_for_steady_state`), then GET `<url>/readyz` through the public URL;
- withdraw (after a failure): an unfinished rotation's AWSPENDING label is removed, so AWSCURRENT
  (the serving user) stays and the next rotation can start;
- retire_login: nothing to do now. The previous user stays valid until the *next* rotation, when
  the rotation function gives it a new password: that is what "locks" it on aws. Tasks still
  running as it (none, once the service is steady) keep working meanwhile.

The password is read only to learn the user names; it is remembered for redaction and never
logged or returned.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from shop_ops.release.ecs import EcsDeployError, describe_service, wait_for_steady_state
from shop_ops.release.flow import DeployRefused, Log, StepFailed
from shop_ops.services.processes import ServiceError, wait_for_http
from shop_ops.services.redaction import KNOWN_SECRETS

CLONE_SUFFIX = "_clone"  # what AWS's multi-user rotation function appends to (or strips from) the username
CURRENT, PENDING = "AWSCURRENT", "AWSPENDING"


class SecretRotationError(RuntimeError):
    """Secrets Manager refused the rotation, or it did not finish in time; the message names the secret."""


def alternate_user(username: str) -> str:
    """The other user of the pair, as the multi-user rotation function names it (`x` <-> `x_clone`)."""
    return username.removesuffix(CLONE_SUFFIX) if username.endswith(CLONE_SUFFIX) else username + CLONE_SUFFIX


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", "?"))


def current_user(secrets: Any, secret_id: str) -> str:
    """The `username` of the secret's AWSCURRENT version (its password is remembered for redaction, never returned).

    DeployRefused when it cannot be read: nothing has changed yet.
    """
    try:
        raw = secrets.get_secret_value(SecretId=secret_id, VersionStage=CURRENT)["SecretString"]
        document = json.loads(raw)
        KNOWN_SECRETS.add(str(document.get("password") or ""))
        return str(document["username"])
    except ClientError as exc:
        raise DeployRefused(
            f"secret {secret_id}: Secrets Manager answered {_code(exc)} to GetSecretValue; check the ARN "
            "(environments.<env>.database_secret_arn) and secretsmanager:GetSecretValue"
        ) from None
    except (BotoCoreError, KeyError, TypeError, ValueError) as exc:
        raise DeployRefused(
            f"secret {secret_id} has no AWSCURRENT JSON with a username ({type(exc).__name__}): it must be "
            '{"engine","host","port","dbname","username","password","masterarn"}'
        ) from None


def version_stages(secrets: Any, secret_id: str) -> dict[str, list[str]]:
    """version id -> its staging labels, as DescribeSecret shows them."""
    return dict(secrets.describe_secret(SecretId=secret_id).get("VersionIdsToStages", {}))


def start_rotation(secrets: Any, secret_id: str, token: str | None = None) -> str:
    """RotateSecret with the secret's configured function and schedule; the new version's id."""
    token = token or str(uuid.uuid4())
    try:
        return str(secrets.rotate_secret(SecretId=secret_id, ClientRequestToken=token)["VersionId"])
    except ClientError as exc:
        raise SecretRotationError(
            f"secret {secret_id}: RotateSecret was refused ({_code(exc)}: {exc.response.get('Error', {}).get('Message', '')}); "
            "check that rotation is configured on it (Terraform aws_secretsmanager_secret_rotation), that no earlier "
            "rotation is stuck (an AWSPENDING version: the rotation function's CloudWatch logs say why) and "
            "secretsmanager:RotateSecret"
        ) from None


def wait_until_current(
    secrets: Any,
    secret_id: str,
    version: str,
    timeout_s: float,
    poll_s: float,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> float:
    """Poll until `version` carries AWSCURRENT; the seconds waited, or SecretRotationError at the timeout."""
    started = clock()
    while True:
        stages = version_stages(secrets, secret_id).get(version)
        if stages is not None and CURRENT in stages:
            return round(clock() - started, 3)
        waited = clock() - started
        if waited >= timeout_s:
            state = f"its labels are {stages}" if stages else "the version does not exist (yet)"
            raise SecretRotationError(
                f"secret {secret_id}: the rotation to version {version} did not finish within {timeout_s:g}s "
                f"({state}); the rotation function's CloudWatch logs (/aws/lambda/<prefix>-db-rotation) say why: it "
                "must reach the database and Secrets Manager from its subnets and log in with the master secret"
            )
        sleep(min(poll_s, max(timeout_s - waited, 0.0)))


@dataclass
class EcsLogins:
    """`LoginRotationSteps` for one aws environment: its app secret in Secrets Manager and its ECS service."""

    environment: str
    secrets: Any  # a boto3 Secrets Manager client
    secret_id: str  # the app secret's ARN (environments.<env>.database_secret_arn)
    ecs: Any  # a boto3 ECS client
    cluster: str
    service: str
    url: str  # the environment's public URL: /readyz is checked there after the restart
    lock: Callable[[], AbstractContextManager[None]]  # the environment's deploy lock (EcsService.lock)
    rotation_timeout_s: float = 300
    deploy_timeout_s: float = 600
    ready_timeout_s: float = 60
    poll_s: float = 10
    log: Log = field(default=lambda _line: None)
    _version: str | None = field(default=None, repr=False)  # the version this rotation started

    def serving_login(self) -> str:
        return current_user(self.secrets, self.secret_id)

    def idle_login(self) -> str:
        return alternate_user(self.serving_login())

    def issue(self, role: str) -> None:
        self._version = start_rotation(self.secrets, self.secret_id)
        self.log(f"{self.environment}: rotating secret {self.secret_id} (version {self._version}) to {role}")
        waited = wait_until_current(self.secrets, self.secret_id, self._version, self.rotation_timeout_s, self.poll_s)
        now = current_user(self.secrets, self.secret_id)
        if now != role:
            raise SecretRotationError(
                f"secret {self.secret_id} now names user {now}, not {role}: is its rotation function the multi-user "
                "one (SecretsManagerRDSPostgreSQLRotationMultiUser)? The single-user one keeps the user"
            )
        self.log(f"{self.environment}: secret {self.secret_id} is AWSCURRENT for {role} after {waited}s")

    def restart_on(self, role: str, steps: dict[str, float]) -> dict[str, str]:
        started = time.monotonic()
        try:
            svc = describe_service(self.ecs, self.cluster, self.service)
            task_definition = str(svc["taskDefinition"])
            self.ecs.update_service(cluster=self.cluster, service=self.service, forceNewDeployment=True)
            state = wait_for_steady_state(
                self.ecs, self.cluster, self.service, task_definition, self.deploy_timeout_s, self.poll_s
            )
        except (EcsDeployError, ClientError) as exc:
            raise StepFailed(f"the new deployment of ECS service {self.cluster}/{self.service} failed: {exc}") from None
        steps["redeploy"] = round(time.monotonic() - started, 3)
        if not state.stable:
            raise StepFailed(
                f"ECS service {self.cluster}/{self.service} did not become steady as {role}: {state.reason}; the "
                "circuit breaker keeps or restores the tasks of the previous deployment. Check the service's events "
                f"and the backend log group (can {role} log in? the secret's masterarn user must have created it)"
            )
        started = time.monotonic()
        try:
            wait_for_http(f"{self.url.rstrip('/')}/readyz", self.ready_timeout_s)
        except ServiceError as exc:
            raise StepFailed(
                f"{self.environment} is steady as {role} but not ready through {self.url}: {exc}"
            ) from None
        steps["verify"] = round(time.monotonic() - started, 3)
        self.log(f"{self.environment}: {self.cluster}/{self.service} serves as {role} ({task_definition})")
        return {"service": self.service, "task_definition": task_definition, "secret_version": self._version or ""}

    def withdraw(self, role: str) -> None:
        """Remove the AWSPENDING label of an unfinished rotation (AWSCURRENT, the serving user, stays)."""
        if self._version is None:
            return  # RotateSecret itself was refused: nothing started
        stages = version_stages(self.secrets, self.secret_id).get(self._version, [])
        if CURRENT in stages:
            self.log(
                f"{self.environment}: secret {self.secret_id} already names {role}; both users stay valid, so "
                "tasks that start from now on log in as it"
            )
            return
        if PENDING in stages:
            self.secrets.update_secret_version_stage(
                SecretId=self.secret_id, VersionStage=PENDING, RemoveFromVersionId=self._version
            )
            self.log(f"{self.environment}: removed AWSPENDING from version {self._version} of {self.secret_id}")

    def retire_login(self, role: str) -> int:
        self.log(
            f"{self.environment}: {role} stays valid until the next rotation gives it a new password (alternating "
            "users); no task logs in as it any more"
        )
        return 0
