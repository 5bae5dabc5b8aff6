# RDS PostgreSQL 15: encrypted, automated backups (PITR) for backup_retention_period days,
# Multi-AZ as the environment says, slow-query logging, enhanced monitoring and Performance
# Insights, an optional read replica, and RDS Proxy in front for connection pooling.

resource "aws_db_subnet_group" "this" {
  name       = var.identifier
  subnet_ids = var.subnet_ids

  tags = merge(var.tags, { Component = "database" })
}

resource "aws_db_parameter_group" "this" {
  name   = "${var.identifier}-pg15"
  family = "postgres15"

  parameter {
    name  = "log_min_duration_statement"
    value = tostring(var.slow_query_ms)
  }

  # A slow statement's bind parameters (customers' data) stay out of the log.
  parameter {
    name  = "log_parameter_max_length"
    value = "0"
  }

  # Query insight (the slow_queries asset): pg_stat_statements, loaded at start (a static parameter:
  # applied at the next reboot), then `CREATE EXTENSION pg_stat_statements` by the master user once.
  parameter {
    name         = "shared_preload_libraries"
    value        = "pg_stat_statements"
    apply_method = "pending-reboot"
  }

  parameter {
    name  = "pg_stat_statements.track"
    value = "top"
  }

  # PostgreSQL 15 keeps a utility command's text as sent: ALTER ROLE ... PASSWORD would be kept.
  parameter {
    name  = "pg_stat_statements.track_utility"
    value = "0"
  }

  parameter {
    name  = "log_lock_waits"
    value = "1"
  }

  parameter {
    name  = "rds.force_ssl"
    value = "1"
  }

  # The catalogue search's ILIKE with a bound parameter needs custom plans to use the trigram index.
  parameter {
    name  = "plan_cache_mode"
    value = "force_custom_plan"
  }

  lifecycle {
    create_before_destroy = true
  }

  tags = merge(var.tags, { Component = "database" })
}

data "aws_iam_policy_document" "monitoring_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["monitoring.rds.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "monitoring" {
  name               = "${var.identifier}-rds-monitoring"
  assume_role_policy = data.aws_iam_policy_document.monitoring_assume.json

  tags = merge(var.tags, { Component = "database" })
}

resource "aws_iam_role_policy_attachment" "monitoring" {
  role       = aws_iam_role.monitoring.name
  policy_arn = "arn:aws:iam::aws:policy/service-role/AmazonRDSEnhancedMonitoringRole"
}

# The groups RDS exports the PostgreSQL log (slow queries included) and upgrade log to. Created here,
# before the instances, with retention: left to RDS they would be created keeping logs forever.
locals {
  log_exports         = ["postgresql", "upgrade"]
  replica_log_exports = var.read_replica ? local.log_exports : []
}

resource "aws_cloudwatch_log_group" "exports" {
  #checkov:skip=CKV_AWS_158:CloudWatch Logs encrypts these at rest with its own key; no customer managed key for logs in this project (as modules/logs)
  #checkov:skip=CKV_AWS_338:database logs are read within days (slow queries, errors); retention is var.log_retention_days on purpose, a year would cost more than it helps
  for_each = toset(local.log_exports)

  name              = "/aws/rds/instance/${var.identifier}/${each.key}"
  retention_in_days = var.log_retention_days

  tags = merge(var.tags, { Component = "database" })
}

resource "aws_cloudwatch_log_group" "replica_exports" {
  #checkov:skip=CKV_AWS_158:CloudWatch Logs encrypts these at rest with its own key; no customer managed key for logs in this project (as modules/logs)
  #checkov:skip=CKV_AWS_338:database logs are read within days (slow queries, errors); retention is var.log_retention_days on purpose, a year would cost more than it helps
  for_each = toset(local.replica_log_exports)

  name              = "/aws/rds/instance/${var.identifier}-replica/${each.key}"
  retention_in_days = var.log_retention_days

  tags = merge(var.tags, { Component = "database" })
}

resource "aws_db_instance" "this" {
  #checkov:skip=CKV_AWS_354:Performance Insights data is encrypted with the AWS managed key aws/rds, like the storage (var.kms_key_arn is null in both environments); no customer managed key for the database in this project
  identifier     = var.identifier
  engine         = "postgres"
  engine_version = var.engine_version
  instance_class = var.instance_class

  allocated_storage     = var.allocated_storage_gb
  max_allocated_storage = var.max_allocated_storage_gb
  storage_type          = "gp3"
  storage_encrypted     = true
  kms_key_id            = var.kms_key_arn

  db_name  = var.database_name
  username = var.master_username
  password = var.master_password
  port     = 5432

  multi_az               = var.multi_az
  db_subnet_group_name   = aws_db_subnet_group.this.name
  vpc_security_group_ids = [var.security_group_id]
  publicly_accessible    = false
  parameter_group_name   = aws_db_parameter_group.this.name

  backup_retention_period  = var.backup_retention_days
  backup_window            = "02:00-03:00"
  maintenance_window       = "sun:03:30-sun:04:30"
  copy_tags_to_snapshot    = true
  delete_automated_backups = false

  monitoring_interval                   = var.monitoring_interval
  monitoring_role_arn                   = aws_iam_role.monitoring.arn
  performance_insights_enabled          = true
  performance_insights_retention_period = 7
  enabled_cloudwatch_logs_exports       = local.log_exports

  auto_minor_version_upgrade          = true
  deletion_protection                 = var.deletion_protection
  skip_final_snapshot                 = false
  final_snapshot_identifier           = "${var.identifier}-final"
  iam_database_authentication_enabled = true

  tags = merge(var.tags, { Component = "database" })

  depends_on = [aws_cloudwatch_log_group.exports]

  # The master password is rotated by Secrets Manager (modules/secrets, the master secret) after creation.
  lifecycle {
    ignore_changes = [password]
  }
}

resource "aws_db_instance" "replica" {
  #checkov:skip=CKV_AWS_354:Performance Insights data is encrypted with the AWS managed key aws/rds, like the storage; no customer managed key for the database in this project
  #checkov:skip=CKV_AWS_133:a read replica: the primary holds the automated backups and point-in-time recovery, and the nightly snapshot copies are taken of the primary
  #checkov:skip=CKV_AWS_157:a read replica for read load: the primary is Multi-AZ in production, and a lost replica is recreated from it; Multi-AZ here would double the replica's cost
  count = var.read_replica ? 1 : 0

  identifier          = "${var.identifier}-replica"
  replicate_source_db = aws_db_instance.this.identifier
  instance_class      = coalesce(var.replica_instance_class, var.instance_class)
  storage_encrypted   = true
  kms_key_id          = var.kms_key_arn

  vpc_security_group_ids = [var.security_group_id]
  publicly_accessible    = false
  parameter_group_name   = aws_db_parameter_group.this.name

  backup_retention_period               = 0
  monitoring_interval                   = var.monitoring_interval
  monitoring_role_arn                   = aws_iam_role.monitoring.arn
  performance_insights_enabled          = true
  performance_insights_retention_period = 7
  enabled_cloudwatch_logs_exports       = local.log_exports
  auto_minor_version_upgrade            = true
  copy_tags_to_snapshot                 = true
  deletion_protection                   = var.deletion_protection
  skip_final_snapshot                   = true
  iam_database_authentication_enabled   = true

  tags = merge(var.tags, { Component = "database" })

  depends_on = [aws_cloudwatch_log_group.replica_exports]
}

# RDS Proxy: pools the tasks' connections (autoscaling adds tasks, not database connections)
# and shortens failovers. It logs in with the secrets it is given, one per user: the master
# login and the app login. The app login's secret names one of its two alternating users at a
# time, so the proxy knows the user the secret names now; tasks still logged in as the previous
# user keep their pooled connections, but new ones through the proxy fail until the service's
# forced redeployment (rotate_database_password) has replaced those tasks.
data "aws_iam_policy_document" "proxy_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["rds.amazonaws.com"]
    }
  }
}

data "aws_iam_policy_document" "proxy" {
  statement {
    actions   = ["secretsmanager:GetSecretValue"]
    resources = var.secret_arns
  }
}

resource "aws_iam_role" "proxy" {
  name               = "${var.identifier}-rds-proxy"
  assume_role_policy = data.aws_iam_policy_document.proxy_assume.json

  tags = merge(var.tags, { Component = "database" })
}

resource "aws_iam_role_policy" "proxy" {
  name   = "read-database-secret"
  role   = aws_iam_role.proxy.id
  policy = data.aws_iam_policy_document.proxy.json
}

resource "aws_db_proxy" "this" {
  name                   = var.identifier
  engine_family          = "POSTGRESQL"
  role_arn               = aws_iam_role.proxy.arn
  vpc_subnet_ids         = var.subnet_ids
  vpc_security_group_ids = [var.security_group_id]
  require_tls            = true
  idle_client_timeout    = 1800

  dynamic "auth" {
    for_each = var.secret_arns
    content {
      auth_scheme = "SECRETS"
      iam_auth    = "DISABLED"
      secret_arn  = auth.value
    }
  }

  tags = merge(var.tags, { Component = "database" })
}

resource "aws_db_proxy_default_target_group" "this" {
  db_proxy_name = aws_db_proxy.this.name

  connection_pool_config {
    max_connections_percent      = 90
    max_idle_connections_percent = 50
    connection_borrow_timeout    = 120
  }
}

resource "aws_db_proxy_target" "this" {
  db_proxy_name          = aws_db_proxy.this.name
  target_group_name      = aws_db_proxy_default_target_group.this.name
  db_instance_identifier = aws_db_instance.this.identifier
}
