# Secrets Manager secrets of one environment: the database login (the JSON shape the AWS
# rotation function expects; config/aws.yaml environments.<env>.database_secret_arn), rotated
# every rotation_days by AWS's single-user PostgreSQL rotation function; the Redis AUTH token;
# the shop's admin token. Values are generated here and live in the (encrypted) remote state.

data "aws_partition" "current" {}
data "aws_region" "current" {}

resource "random_password" "database" {
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

resource "aws_secretsmanager_secret" "database" {
  name                    = "${var.prefix}/db"
  description             = "PostgreSQL login of ${var.prefix} (username, password, host, port, dbname)"
  kms_key_id              = var.kms_key_arn
  recovery_window_in_days = var.recovery_window_days

  tags = merge(var.tags, { Component = "secrets" })
}

resource "aws_secretsmanager_secret_version" "database" {
  secret_id     = aws_secretsmanager_secret.database.id
  secret_string = jsonencode({
    engine   = "postgres"
    host     = var.database_host
    port     = 5432
    username = var.database_username
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
  name           = "${replace(var.prefix, "/", "-")}-db-rotation"
  application_id = "arn:${data.aws_partition.current.partition}:serverlessrepo:us-east-1:297356227824:applications/SecretsManagerRDSPostgreSQLRotationSingleUser"
  capabilities   = ["CAPABILITY_IAM", "CAPABILITY_RESOURCE_POLICY"]

  parameters = {
    functionName        = "${replace(var.prefix, "/", "-")}-db-rotation"
    endpoint            = "https://secretsmanager.${data.aws_region.current.name}.amazonaws.com"
    vpcSubnetIds        = join(",", var.rotation_subnet_ids)
    vpcSecurityGroupIds = var.rotation_security_group_id
  }

  tags = merge(var.tags, { Component = "secrets" })
}

resource "aws_secretsmanager_secret_rotation" "database" {
  secret_id           = aws_secretsmanager_secret.database.id
  rotation_lambda_arn = aws_serverlessapplicationrepository_cloudformation_stack.rotation.outputs["RotationLambdaARN"]

  rotation_rules {
    automatically_after_days = var.rotation_days
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
