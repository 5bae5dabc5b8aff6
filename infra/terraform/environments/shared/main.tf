# What both environments share: the ECS cluster, the ECR repositories, the backups bucket and
# its DR copy, the Dagster run roles, GitHub's delivery role, the run log group and the
# account's budget. Applied after bootstrap/, before environments/staging and production,
# which read its outputs through terraform_remote_state.

data "aws_caller_identity" "current" {}

locals {
  # The names config/aws.yaml uses (aws.*).
  region              = "eu-central-1"
  dr_region           = "eu-west-1"
  ecs_cluster         = "shop"
  backups_bucket      = "shop-ops-backups"
  backups_copy_bucket = "shop-ops-backups-dr"
  environments        = ["staging", "production"]

  tags = {
    Project     = "shop"
    Environment = "shared"
    Owner       = var.owner
    CostCenter  = var.cost_center
  }

  account = data.aws_caller_identity.current.account_id
}

module "ecs_cluster" {
  source = "../../modules/ecs_cluster"

  name = local.ecs_cluster
  tags = local.tags
}

module "ecr" {
  source = "../../modules/ecr"

  repositories = ["shop/backend", "shop/frontend"]
  tags         = local.tags
}

module "backups" {
  source    = "../../modules/backups"
  providers = {
    aws    = aws
    aws.dr = aws.dr
  }

  bucket_name          = local.backups_bucket
  copy_bucket_name     = local.backups_copy_bucket
  restore_client_cidrs = var.restore_client_cidrs
  tags                 = local.tags
}

module "logs" {
  source = "../../modules/logs"

  log_groups = {
    "/shop-ops/dagster-runs" = 90
  }
  tags = local.tags
}

# The environments' roles and secrets are named by convention (modules/ecs: <service>-task and
# <service>-execution; modules/secrets: shop/<env>/...), so this root needs none of their state.
module "iam" {
  source = "../../modules/iam"

  name               = "shop-ops"
  ecs_cluster_name   = module.ecs_cluster.name
  ecs_service_names  = [for env in local.environments : "shop-${env}"]
  passable_role_arns = flatten([
    for env in local.environments : [
      "arn:aws:iam::${local.account}:role/shop-${env}-task",
      "arn:aws:iam::${local.account}:role/shop-${env}-execution",
    ]
  ])
  ecr_repository_arns     = module.ecr.repository_arns
  backups_bucket_arn      = module.backups.bucket_arn
  backups_copy_bucket_arn = module.backups.copy_bucket_arn
  kms_key_arns            = [module.backups.dr_kms_key_arn]
  readable_secret_arns    = flatten([
    for env in local.environments : [
      "arn:aws:secretsmanager:${local.region}:${local.account}:secret:shop/${env}/db-??????",
      "arn:aws:secretsmanager:${local.region}:${local.account}:secret:shop/${env}/admin-token-??????",
    ]
  ])
  rotatable_secret_arns = [
    for env in local.environments : "arn:aws:secretsmanager:${local.region}:${local.account}:secret:shop/${env}/db-??????"
  ]
  rotation_function_arns = [
    for env in local.environments : "arn:aws:lambda:${local.region}:${local.account}:function:shop-${env}-db-rotation"
  ]
  dagster_secret_arns = var.dagster_secret_arns
  run_log_group_arn   = module.logs.arns["/shop-ops/dagster-runs"]
  github_repository   = var.github_repository
  tags                = local.tags
}

module "budget" {
  source = "../../modules/budgets"

  name              = "shop-account-monthly"
  monthly_limit_usd = var.account_budget_usd
  alert_emails      = var.budget_alert_emails
  tags              = local.tags
}
