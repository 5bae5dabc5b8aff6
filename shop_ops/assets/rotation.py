"""The `rotate_database_password` op: one environment's database password rotated between its two login roles.

The environment is the run's partition, as for `rollback`. The op only wires Dagster to
`release_target.login_rotation` (the target's steps: blue/green locally) and
`shop_ops.security.rotation.rotate` (their order and fault handling, the ledger row). Its output
metadata names the roles and the seconds per step, never a password.
"""

from typing import Any

import dagster as dg

from shop_ops.release.flow import DeployRefused
from shop_ops.release.targets import ReleaseTarget
from shop_ops.resources.ledger import LedgerResource
from shop_ops.security.rotation import RotationFailed, rotate
from shop_ops.services.processes import ServiceError
from shop_ops.settings import ENVIRONMENTS


@dg.static_partitioned_config(
    partition_keys=list(ENVIRONMENTS), tags_for_partition_key_fn=lambda environment: {"environment": environment}
)
def rotation_run_config(environment: str) -> dict[str, Any]:
    """`rotate_database_password` is partitioned by environment: the UI asks which, the run gets its tag."""
    return {}


@dg.op(
    out=dg.Out(dg.Nothing),
    description=(
        "A new password on the idle login role of the environment's database (the run's partition), the serving "
        "release restarted onto it slot by slot, the other role locked; recorded in the release ledger."
    ),
)
def rotate_database_login(
    context: dg.OpExecutionContext, release_target: ReleaseTarget, ledger: LedgerResource
) -> dg.Output[None]:
    if not context.has_partition_key or context.partition_key not in ENVIRONMENTS:
        raise dg.Failure(description=f"launch it for one partition, the environment: {', '.join(ENVIRONMENTS)}")
    environment = context.partition_key
    try:
        steps = release_target.login_rotation(environment, context.log.info)
        result = rotate(steps, ledger.open(), run_id=context.run_id, log=context.log.info)
    except (DeployRefused, ServiceError) as exc:
        raise dg.Failure(description=f"rotation of {environment}'s database login refused: {exc}") from None
    except RotationFailed as exc:
        raise dg.Failure(description=str(exc)) from None
    return dg.Output(None, metadata=result.metadata())
