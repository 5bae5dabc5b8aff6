# IAM for the pipeline: the Dagster run task role and execution role (deploy/ecs/dagster.yaml
# DAGSTER_RUN_TASK_ROLE_ARN / DAGSTER_RUN_EXECUTION_ROLE_ARN), least privilege for what the
# jobs call (docs/aws-deploy.md lists the ECS actions); and GitHub's OIDC provider with the
# role the delivery workflows assume to push images to ECR (no long-lived keys in GitHub).

data "aws_caller_identity" "current" {}
data "aws_region" "current" {}
data "aws_partition" "current" {}

locals {
  account = data.aws_caller_identity.current.account_id
  region  = data.aws_region.current.name
  arn     = data.aws_partition.current.partition
}

data "aws_iam_policy_document" "tasks_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["ecs-tasks.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account]
    }
  }
}

# --- Dagster run execution role: pull the runner image, write run logs, read the storage password ---

resource "aws_iam_role" "run_execution" {
  name               = "${var.name}-run-execution"
  assume_role_policy = data.aws_iam_policy_document.tasks_assume.json

  tags = merge(var.tags, { Component = "pipeline" })
}

resource "aws_iam_role_policy_attachment" "run_execution_ecs" {
  role       = aws_iam_role.run_execution.name
  policy_arn = "arn:${local.arn}:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy"
}

data "aws_iam_policy_document" "run_execution" {
  statement {
    sid       = "DagsterStoragePassword"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = var.dagster_secret_arns
  }
}

resource "aws_iam_role_policy" "run_execution" {
  count = length(var.dagster_secret_arns) > 0 ? 1 : 0

  name   = "read-dagster-secrets"
  role   = aws_iam_role.run_execution.id
  policy = data.aws_iam_policy_document.run_execution.json
}

# --- Dagster run task role: what the jobs themselves call ---------------------------------------

data "aws_iam_policy_document" "run_task" {
  # Releases and rollbacks (shop_ops/release/ecs.py, ecs_tasks.py) on the environments' services.
  statement {
    sid       = "EcsServices"
    actions   = ["ecs:DescribeServices", "ecs:UpdateService"]
    resources = [
      for s in var.ecs_service_names : "arn:${local.arn}:ecs:${local.region}:${local.account}:service/${var.ecs_cluster_name}/${s}"
    ]
  }

  statement {
    sid       = "EcsRunMigrationTasks"
    actions   = ["ecs:RunTask"]
    resources = [
      for s in var.ecs_service_names : "arn:${local.arn}:ecs:${local.region}:${local.account}:task-definition/${s}:*"
    ]
    condition {
      test     = "ArnEquals"
      variable = "ecs:cluster"
      values   = ["arn:${local.arn}:ecs:${local.region}:${local.account}:cluster/${var.ecs_cluster_name}"]
    }
  }

  statement {
    sid       = "EcsTasks"
    actions   = ["ecs:DescribeTasks", "ecs:StopTask"]
    resources = ["arn:${local.arn}:ecs:${local.region}:${local.account}:task/${var.ecs_cluster_name}/*"]
  }

  statement {
    sid       = "EcsTagRevisions"
    actions   = ["ecs:TagResource"]
    resources = [
      for s in var.ecs_service_names : "arn:${local.arn}:ecs:${local.region}:${local.account}:task-definition/${s}:*"
    ]
  }

  # These ECS actions take no resource ARN.
  statement {
    sid       = "EcsTaskDefinitions"
    actions   = ["ecs:RegisterTaskDefinition", "ecs:DescribeTaskDefinition", "ecs:ListTaskDefinitions"]
    resources = ["*"]
  }

  statement {
    sid       = "PassServiceRoles"
    actions   = ["iam:PassRole"]
    resources = var.passable_role_arns
    condition {
      test     = "StringEquals"
      variable = "iam:PassedToService"
      values   = ["ecs-tasks.amazonaws.com"]
    }
  }

  # Image digests, the push sensor, image checks.
  statement {
    sid       = "EcrAuth"
    actions   = ["ecr:GetAuthorizationToken"]
    resources = ["*"]
  }

  statement {
    sid     = "EcrRead"
    actions = [
      "ecr:BatchCheckLayerAvailability",
      "ecr:BatchGetImage",
      "ecr:GetDownloadUrlForLayer",
      "ecr:DescribeImages",
      "ecr:ListImages",
      "ecr:DescribeImageScanFindings",
    ]
    resources = var.ecr_repository_arns
  }

  # registry_retention: images it does not keep are deleted by digest (ECR collects their layers itself).
  statement {
    sid       = "EcrRetention"
    actions   = ["ecr:BatchDeleteImage"]
    resources = var.ecr_repository_arns
  }

  # Logical backups (backup_store on S3) and their DR copies.
  statement {
    sid       = "BackupsList"
    actions   = ["s3:ListBucket", "s3:GetBucketLocation"]
    resources = [var.backups_bucket_arn, var.backups_copy_bucket_arn]
  }

  statement {
    sid       = "BackupsWrite"
    actions   = ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"]
    resources = ["${var.backups_bucket_arn}/*"]
  }

  statement {
    sid       = "BackupsCopyRead"
    actions   = ["s3:GetObject"]
    resources = ["${var.backups_copy_bucket_arn}/*"]
  }

  # Physical backups (shop_ops/backup/rds.py): snapshots, DR copies, restore tests on temporary instances.
  statement {
    sid     = "RdsSnapshots"
    actions = [
      "rds:CreateDBSnapshot",
      "rds:CopyDBSnapshot",
      "rds:DeleteDBSnapshot",
      "rds:DescribeDBSnapshots",
      "rds:DescribeDBInstances",
      "rds:AddTagsToResource",
      "rds:ListTagsForResource",
      "rds:RestoreDBInstanceFromDBSnapshot",
    ]
    resources = [
      "arn:${local.arn}:rds:*:${local.account}:db:*",
      "arn:${local.arn}:rds:*:${local.account}:snapshot:*",
      "arn:${local.arn}:rds:*:${local.account}:subgrp:*",
      "arn:${local.arn}:rds:*:${local.account}:pg:*",
      "arn:${local.arn}:rds:*:${local.account}:og:*",
    ]
  }

  # Only the restore tests' own instances may be changed or deleted (shop_ops/backup/rds.py tags them).
  statement {
    sid       = "RdsTemporaryInstances"
    actions   = ["rds:ModifyDBInstance", "rds:DeleteDBInstance"]
    resources = ["arn:${local.arn}:rds:*:${local.account}:db:shop-ops-restore-*"]
    condition {
      test     = "StringEquals"
      variable = "aws:ResourceTag/shop-ops:temporary"
      values   = ["true"]
    }
  }

  statement {
    sid       = "DrKey"
    actions   = ["kms:DescribeKey", "kms:CreateGrant", "kms:Decrypt", "kms:GenerateDataKey*", "kms:ReEncrypt*"]
    resources = var.kms_key_arns
  }

  # Secrets the jobs read: the databases' logins (backups), the shops' admin tokens (load tests).
  statement {
    sid       = "ShopSecrets"
    actions   = ["secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"]
    resources = var.readable_secret_arns
  }

  # rotate_database_password (shop_ops/release/ecs_rotation.py): start a rotation of an app login (Secrets
  # Manager invokes its rotation function on the caller's behalf, so the caller may invoke it too), and
  # remove the AWSPENDING label of one that never finished.
  statement {
    sid       = "RotateAppLogins"
    actions   = ["secretsmanager:RotateSecret", "secretsmanager:UpdateSecretVersionStage"]
    resources = var.rotatable_secret_arns
  }

  statement {
    sid       = "InvokeRotationFunctions"
    actions   = ["lambda:InvokeFunction"]
    resources = var.rotation_function_arns
  }

  # Actual spend (costs group). Cost Explorer has no resource-level permissions.
  statement {
    sid       = "CostExplorerRead"
    actions   = ["ce:GetCostAndUsage", "ce:GetCostForecast", "ce:GetDimensionValues", "ce:GetTags"]
    resources = ["*"]
  }

  statement {
    sid       = "RunLogs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents", "logs:GetLogEvents"]
    resources = ["${var.run_log_group_arn}:*"]
  }
}

resource "aws_iam_policy" "run_task" {
  name        = "${var.name}-run-task"
  description = "What shop-ops' Dagster runs call: ECS releases, ECR reads, backups, RDS snapshots, Cost Explorer"
  policy      = data.aws_iam_policy_document.run_task.json

  tags = merge(var.tags, { Component = "pipeline" })
}

resource "aws_iam_role" "run_task" {
  name               = "${var.name}-run-task"
  assume_role_policy = data.aws_iam_policy_document.tasks_assume.json

  tags = merge(var.tags, { Component = "pipeline" })
}

resource "aws_iam_role_policy_attachment" "run_task" {
  role       = aws_iam_role.run_task.name
  policy_arn = aws_iam_policy.run_task.arn
}

# --- GitHub Actions: OIDC provider and the delivery role ------------------------------------------

resource "aws_iam_openid_connect_provider" "github" {
  url             = "https://token.actions.githubusercontent.com"
  client_id_list  = ["sts.amazonaws.com"]
  thumbprint_list = ["6938fd4d98bab03faadb97b34396831e3780aea1", "1c58a3a8518e8759bf075b76b750d4f2df264fcd"]

  tags = merge(var.tags, { Component = "delivery" })
}

data "aws_iam_policy_document" "github_assume" {
  statement {
    actions = ["sts:AssumeRoleWithWebIdentity"]
    principals {
      type        = "Federated"
      identifiers = [aws_iam_openid_connect_provider.github.arn]
    }
    condition {
      test     = "StringEquals"
      variable = "token.actions.githubusercontent.com:aud"
      values   = ["sts.amazonaws.com"]
    }
    # Only the main branch and release tags of this one repository.
    condition {
      test     = "StringLike"
      variable = "token.actions.githubusercontent.com:sub"
      values   = [
        "repo:${var.github_repository}:ref:refs/heads/main",
        "repo:${var.github_repository}:ref:refs/tags/v*",
      ]
    }
  }
}

data "aws_iam_policy_document" "github_delivery" {
  statement {
    sid       = "EcrAuth"
    actions   = ["ecr:GetAuthorizationToken"]
    resources = ["*"]
  }

  statement {
    sid     = "EcrPush"
    actions = [
      "ecr:BatchCheckLayerAvailability",
      "ecr:BatchGetImage",
      "ecr:GetDownloadUrlForLayer",
      "ecr:InitiateLayerUpload",
      "ecr:UploadLayerPart",
      "ecr:CompleteLayerUpload",
      "ecr:PutImage",
      "ecr:DescribeImages",
    ]
    resources = var.ecr_repository_arns
  }
}

resource "aws_iam_role" "github_delivery" {
  name                 = "${var.name}-github-delivery"
  assume_role_policy   = data.aws_iam_policy_document.github_assume.json
  max_session_duration = 3600

  tags = merge(var.tags, { Component = "delivery" })
}

resource "aws_iam_role_policy" "github_delivery" {
  name   = "push-images"
  role   = aws_iam_role.github_delivery.id
  policy = data.aws_iam_policy_document.github_delivery.json
}
