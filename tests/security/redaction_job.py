"""A job that leaks a secret every way a step can (tests/security/test_redaction.py runs it and scans DAGSTER_HOME).

The password comes from the `secrets` resource (files backend, folder SHOP_OPS_TEST_SECRETS_DIR).
Loaded as a code location (`dagster job execute -f`), it installs the redaction hook as definitions.py does.
"""

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg

from shop_ops.security.redaction import install_redaction
from shop_ops.security.secrets import SecretsResource

# A command that fails and says why, quoting the password it was given (through its environment).
FAILING = 'echo "FATAL: password authentication failed ($LEAK_PW)" >&2; exit 3'


@dg.op
def leaky(context: dg.OpExecutionContext, secrets: SecretsResource):
    _user, password = secrets.database_credentials("staging")
    env = {**os.environ, "LEAK_PW": password}
    # A child that writes straight to the step's stderr (not captured by Python).
    subprocess.run(["sh", "-c", FAILING], env=env, check=False)
    result = subprocess.run(["sh", "-c", FAILING], env=env, capture_output=True, text=True, check=False)
    context.log.error(f"the command said: {result.stderr.strip()}")
    print(f"stdout copy: {result.stderr.strip()}")
    print(f"stderr copy: {result.stderr.strip()}", file=sys.stderr)
    yield dg.AssetMaterialization(
        asset_key="leaky_report",
        metadata={
            "stderr": result.stderr,
            "as_markdown": dg.MetadataValue.md(f"`{password}`"),
            "as_json": dg.MetadataValue.json({"nested": [password]}),
        },
    )
    raise RuntimeError(f"command failed with {result.returncode}: {result.stderr.strip()}")


@dg.job(executor_def=dg.in_process_executor)
def leaky_job() -> None:
    leaky()


if os.environ.get("SHOP_OPS_TEST_SECRETS_DIR"):
    folder = Path(os.environ["SHOP_OPS_TEST_SECRETS_DIR"])
    install_redaction([folder])  # what definitions.py does when the code location loads
    defs = dg.Definitions(jobs=[leaky_job], resources={"secrets": SecretsResource(folder=str(folder))})
