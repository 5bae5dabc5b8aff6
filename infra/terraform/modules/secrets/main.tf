# Secrets Manager secrets of one environment:
# - the master login (RDS's master user, `<prefix>/db-master`), rotated every rotation_days by AWS's
#   single-user PostgreSQL function; only the rotation function of the app login, RDS Proxy and people
#   through the bastion use it;
# - the app login (`<prefix>/db`; config/aws.yaml environments.<env>.database_secret_arn): what the ECS
#   tasks log in with (`username` and `password`, modules/ecs). AWS's alternating-users scheme:
#   SecretsManagerRDSPostgreSQLRotationMultiUser gives the other of two users (`shop_app`,
#   `shop_app_clone`) a new password with the master login named by `masterarn`, then moves
#   AWSCURRENT to it; the previous user keeps working until the next rotation. The pipeline's
#   `rotate_database_password` job starts a rotation and redeploys the service onto it
#   (shop_ops/release/ecs_rotation.py). Both users must exist once before the first rotation:
#   app-users.sql (run by the master user) makes them;
# - the Redis AUTH token and the shop's admin token.
# Values are generated here and live in the (encrypted) remote state.

data "aws_partition" "current" {}
data "aws_region" "current" {}

locals {
  function_prefix = replace(var.prefix, "/", "-")
  rotation_vpc = {
    endpoint            = "https://secretsmanager.${data.aws_region.current.name}.amazonaws.com"
    vpcSubnetIds        = join(",", var.rotation_subnet_ids)
    vpcSecurityGroupIds = var.rotation_security_group_id
  }
  rotation_applications = "arn:${data.aws_partition.current.partition}:serverlessrepo:us-east-1:297356227824:applications"
}

resource "random_password" "database" {
  length           = 32
  special          = true
  override_special = "!#$%&*()-_=+[]{}<>:?"
}

resource "random_password" "app" {
  length           = 32
  special          = true
  override_special = "!#$%&*()-_=+[]{}<>:?"
}

resource "random_password" "redis" {
  length  = 48
  special = false
}

resource "random_password" "admin_token" {
  length  = 48
  special = false
}

resource "aws_secretsmanager_secret" "master" {
  name                    = "${var.prefix}/db-master"
  description             = "PostgreSQL master login of ${var.prefix} (username, password, host, port, dbname)"
  kms_key_id              = var.kms_key_arn
  recovery_window_in_days = var.recovery_window_days

  tags = merge(var.tags, { Component = "secrets" })
}

resource "aws_secretsmanager_secret_version" "master" {
  secret_id = aws_secretsmanager_secret.master.id
  secret_string = jsonencode({
    engine   = "postgres"
    host     = var.database_host
    port     = 5432
    username = var.master_username
    password = random_password.database.result
    dbname   = var.database_name
  })

  # Rotation writes new versions; Terraform only sets the first one.
  lifecycle {
    ignore_changes = [secret_string]
  }
}

# AWS's own rotation function for a single PostgreSQL user, from the Serverless Application Repository.
resource "aws_serverlessapplicationrepository_cloudformation_stack" "rotation" {
  name           = "${local.function_prefix}-db-master-rotation"
  application_id = "${local.rotation_applications}/SecretsManagerRDSPostgreSQLRotationSingleUser"
  capabilities   = ["CAPABILITY_IAM", "CAPABILITY_RESOURCE_POLICY"]

  parameters = merge(local.rotation_vpc, { functionName = "${local.function_prefix}-db-master-rotation" })

  tags = merge(var.tags, { Component = "secrets" })
}

resource "aws_secretsmanager_secret_rotation" "master" {
  secret_id           = aws_secretsmanager_secret.master.id
  rotation_lambda_arn = aws_serverlessapplicationrepository_cloudformation_stack.rotation.outputs["RotationLambdaARN"]

  rotation_rules {
    automatically_after_days = var.rotation_days
  }

  depends_on = [aws_secretsmanager_secret_version.master]
}

resource "aws_secretsmanager_secret" "database" {
  name                    = "${var.prefix}/db"
  description             = "PostgreSQL app login of ${var.prefix}, alternating users (username, password, host, port, dbname, masterarn)"
  kms_key_id              = var.kms_key_arn
  recovery_window_in_days = var.recovery_window_days

  tags = merge(var.tags, { Component = "secrets" })
}

resource "aws_secretsmanager_secret_version" "database" {
  secret_id = aws_secretsmanager_secret.database.id
  secret_string = jsonencode({
    engine    = "postgres"
    host      = var.database_host
    port      = 5432
    username  = var.app_username
    password  = random_password.app.result
    dbname    = var.database_name
    masterarn = aws_secretsmanager_secret.master.arn
  })

  # Rotation writes new versions (and switches `username`); Terraform only sets the first one.
  lifecycle {
    ignore_changes = [secret_string]
  }
}

# AWS's alternating-users rotation function; its role may read the master secret (masterSecretArn).
resource "aws_serverlessapplicationrepository_cloudformation_stack" "app_rotation" {
  name           = "${local.function_prefix}-db-rotation"
  application_id = "${local.rotation_applications}/SecretsManagerRDSPostgreSQLRotationMultiUser"
  capabilities   = ["CAPABILITY_IAM", "CAPABILITY_RESOURCE_POLICY"]

  parameters = merge(
    local.rotation_vpc,
    { functionName = "${local.function_prefix}-db-rotation", masterSecretArn = aws_secretsmanager_secret.master.arn },
    var.kms_key_arn == null ? {} : { masterSecretKmsKeyArn = var.kms_key_arn },
  )

  tags = merge(var.tags, { Component = "secrets" })
}

resource "aws_secretsmanager_secret_rotation" "database" {
  secret_id           = aws_secretsmanager_secret.database.id
  rotation_lambda_arn = aws_serverlessapplicationrepository_cloudformation_stack.app_rotation.outputs["RotationLambdaARN"]

  rotation_rules {
    automatically_after_days = var.app_rotation_days
  }

  depends_on = [aws_secretsmanager_secret_version.database]
}

resource "aws_secretsmanager_secret" "redis" {
  #checkov:skip=CKV2_AWS_57:no rotation function exists for an ElastiCache AUTH token; rotating it means a custom Lambda that sets the token with the ROTATE strategy and redeploys the tasks that read it at start, which this project does not have yet
  name                    = "${var.prefix}/redis"
  description             = "Redis AUTH token of ${var.prefix}"
  kms_key_id              = var.kms_key_arn
  recovery_window_in_days = var.recovery_window_days

  tags = merge(var.tags, { Component = "secrets" })
}

resource "aws_secretsmanager_secret_version" "redis" {
  secret_id     = aws_secretsmanager_secret.redis.id
  secret_string = random_password.redis.result
}

resource "aws_secretsmanager_secret" "admin_token" {
  #checkov:skip=CKV2_AWS_57:the shop reads SHOP_ADMIN_TOKEN once at task start; rotating it needs a custom Lambda plus a redeploy of the service, which this project does not have yet (rotate by hand: new secret value, then release)
  name                    = "${var.prefix}/admin-token"
  description             = "The shop's admin token (SHOP_ADMIN_TOKEN) of ${var.prefix}"
  kms_key_id              = var.kms_key_arn
  recovery_window_in_days = var.recovery_window_days

  tags = merge(var.tags, { Component = "secrets" })
}

resource "aws_secretsmanager_secret_version" "admin_token" {
  secret_id     = aws_secretsmanager_secret.admin_token.id
  secret_string = random_password.admin_token.result
}

# The payment provider's webhook signing secret (SHOP_PAYMENT_WEBHOOK_SECRET). The provider issues it:
# Terraform starts it with a random value (a task cannot start on a secret without one; no provider
# signs with it, so callbacks are refused 401 until then), the operator puts the provider's value
# (`aws secretsmanager put-secret-value`) and releases; Terraform leaves that value alone.
resource "random_password" "payment_webhook_secret" {
  length  = 48
  special = false
}

resource "aws_secretsmanager_secret" "payment_webhook_secret" {
  #checkov:skip=CKV2_AWS_57:the payment provider issues this secret; it is replaced by hand with the provider's new one (then a release), not by a rotation Lambda
  name                    = "${var.prefix}/payment-webhook-secret"
  description             = "The payment provider's webhook signing secret (SHOP_PAYMENT_WEBHOOK_SECRET) of ${var.prefix}"
  kms_key_id              = var.kms_key_arn
  recovery_window_in_days = var.recovery_window_days

  tags = merge(var.tags, { Component = "secrets" })
}

resource "aws_secretsmanager_secret_version" "payment_webhook_secret" {
  secret_id     = aws_secretsmanager_secret.payment_webhook_secret.id
  secret_string = random_password.payment_webhook_secret.result

  lifecycle {
    ignore_changes = [secret_string]
  }
}
