"""The `secrets` resource's aws backend: AWS Secrets Manager on a real moto server (the RDS-style database secret)."""

from __future__ import annotations

import json
import secrets
import subprocess
import sys

import pytest

from shop_ops.security.secrets import SecretsError, SecretsResource
from shop_ops.services.redaction import KNOWN_SECRETS, MASK, redact


def test_aws_backend_against_moto(aws):
    client = aws.client("secretsmanager")
    password = secrets.token_urlsafe(24)
    arn = client.create_secret(
        Name=f"shop/staging/db-{secrets.token_hex(4)}",
        SecretString=json.dumps({"username": "shop", "password": password, "engine": "postgres", "port": 5432}),
    )["ARN"]
    resource = SecretsResource(backend="aws", region=aws.region, endpoint_url=aws.endpoint_url,
                               database_secrets={"staging": arn})  # fmt: skip
    assert resource.database_credentials("staging") == ("shop", password)
    assert redact(f"auth failed: {password}") == f"auth failed: {MASK}"

    rotated = secrets.token_urlsafe(24)
    resource.put_database_credentials("staging", "shop_b", rotated)
    assert resource.database_credentials("staging") == ("shop_b", rotated)
    document = json.loads(client.get_secret_value(SecretId=arn)["SecretString"])
    assert document == {"username": "shop_b", "password": rotated, "engine": "postgres", "port": 5432}
    assert [(a.name, a.action) for a in resource.accessed][-2:] == [(arn, "write"), (arn, "read")]

    with pytest.raises(SecretsError, match="ResourceNotFoundException"):
        resource.get("arn:aws:secretsmanager:eu-central-1:123456789012:secret:shop/none-AbCdEf")
    with pytest.raises(SecretsError, match=r"environments\.production\.database_secret_arn"):
        resource.database_credentials("production")
    KNOWN_SECRETS.discard(password)
    KNOWN_SECRETS.discard(rotated)


def test_s3_compute_logs_are_redacted_before_upload(aws, tmp_path):
    """The aws profile's compute logs: captured through the redactor, then uploaded to S3 (moto)."""
    from shop_ops.security.redaction_aws import RedactingS3ComputeLogManager

    bucket = f"compute-logs-{secrets.token_hex(4)}"
    s3 = aws.client("s3")
    s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": aws.region})
    secret = "s3-" + secrets.token_urlsafe(12)
    KNOWN_SECRETS.add(secret)
    manager = RedactingS3ComputeLogManager(
        bucket=bucket, local_dir=str(tmp_path / "local"), endpoint_url=aws.endpoint_url, region=aws.region
    )
    try:
        with manager.capture_logs(["run", "compute_logs", "step"]):
            # a child handed the step's stderr (under pytest, sys.stderr is not fd 2)
            subprocess.run(["sh", "-c", f"echo 'child said {secret}' >&2"], stderr=sys.stderr, check=True)
    finally:
        KNOWN_SECRETS.discard(secret)
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
    assert any(key.endswith(".err") for key in keys), keys
    uploaded = b"".join(s3.get_object(Bucket=bucket, Key=key)["Body"].read() for key in keys)
    assert f"child said {MASK}".encode() in uploaded and secret.encode() not in uploaded
