# The production environment: its network, ALB, ECS service, database, Redis, assets and CDN,
# DNS, secrets, log groups and budget, in the shared cluster (environments/shared).
# environments/staging is the same file with staging's names and sizes.

locals {
  environment = "production"

  # The names config/aws.yaml uses (environments.production.*).
  service     = "shop-production"
  db_instance = "shop-production"
  domain_name = "shop.example"
  zone_name   = "shop.example"

  # Sizes.
  vpc_cidr            = "10.20.0.0/16"
  single_nat_gateway  = false
  task_cpu            = 1024
  task_memory         = 2048
  min_tasks           = 2
  max_tasks           = 10
  db_instance_class   = "db.m7g.large"
  db_storage_gb       = 100
  db_max_storage_gb   = 500
  db_multi_az         = true
  db_read_replica     = true
  db_backup_days      = 14
  cache_node_type     = "cache.t4g.medium"
  cache_nodes         = 2
  cache_failover      = true
  carts_node_type     = "cache.m7g.large"
  carts_nodes         = 2
  carts_snapshot_days = 7
  log_retention_days  = 90
  deletion_protection = true

  # A placeholder until the cost estimate asset (costs group) gives this environment's figure.
  monthly_budget_usd = 1200

  tags = {
    Project     = "shop"
    Environment = local.environment
    Owner       = var.owner
    CostCenter  = var.cost_center
  }

  shared = data.terraform_remote_state.shared.outputs
}

data "terraform_remote_state" "shared" {
  backend = "s3"

  config = {
    bucket = "shop-ops-terraform-state"
    key    = "shared/terraform.tfstate"
    region = "eu-central-1"
  }
}

data "aws_route53_zone" "this" {
  name         = local.zone_name
  private_zone = false
}

module "network" {
  source = "../../modules/network"

  name               = local.service
  cidr_block         = local.vpc_cidr
  az_count           = 2
  single_nat_gateway = local.single_nat_gateway
  tags               = local.tags
}

module "security" {
  source = "../../modules/security"

  name           = local.service
  vpc_id         = module.network.vpc_id
  enable_bastion = var.enable_bastion
  tags           = local.tags
}

module "bastion" {
  source = "../../modules/bastion"
  count  = var.enable_bastion ? 1 : 0

  name              = local.service
  subnet_id         = module.network.private_subnet_ids[0]
  security_group_id = module.security.bastion_security_group_id
  tags              = local.tags
}

module "storage" {
  source    = "../../modules/storage"
  providers = {
    aws           = aws
    aws.us_east_1 = aws.us_east_1
  }

  name            = "shop-ops-${local.environment}"
  cdn_domain_name = "static.${local.domain_name}"
  zone_id         = data.aws_route53_zone.this.zone_id
  tags            = local.tags
}

module "alb" {
  source = "../../modules/alb"

  name                = local.service
  vpc_id              = module.network.vpc_id
  public_subnet_ids   = module.network.public_subnet_ids
  security_group_id   = module.security.alb_security_group_id
  domain_name         = local.domain_name
  zone_id             = data.aws_route53_zone.this.zone_id
  access_logs_bucket  = module.storage.logs_bucket
  deletion_protection = local.deletion_protection
  tags                = local.tags
}

module "logs" {
  source = "../../modules/logs"

  log_groups = {
    "/shop/${local.environment}/backend"  = local.log_retention_days
    "/shop/${local.environment}/frontend" = local.log_retention_days
  }
  tags = local.tags
}

module "secrets" {
  source = "../../modules/secrets"

  prefix                     = "shop/${local.environment}"
  database_host              = module.database.address
  rotation_subnet_ids        = module.network.private_subnet_ids
  rotation_security_group_id = module.security.app_security_group_id
  tags                       = local.tags
}

module "database" {
  source = "../../modules/database"

  identifier               = local.db_instance
  instance_class           = local.db_instance_class
  allocated_storage_gb     = local.db_storage_gb
  max_allocated_storage_gb = local.db_max_storage_gb
  multi_az                 = local.db_multi_az
  read_replica             = local.db_read_replica
  log_retention_days       = local.log_retention_days
  backup_retention_days    = local.db_backup_days
  master_password          = module.secrets.master_password
  secret_arns              = [module.secrets.master_secret_arn, module.secrets.database_secret_arn]
  deletion_protection      = local.deletion_protection
  subnet_ids               = module.network.private_subnet_ids
  security_group_id        = module.security.database_security_group_id
  tags                     = local.tags
}

# Two Redis of the same module: the catalogue cache may evict (allkeys-lru) and keeps no snapshots;
# the cart store never evicts (carts live 7 days), has a replica in another zone with automatic
# failover, and daily snapshots. One AUTH token for both (SHOP_REDIS_PASSWORD).
module "cache" {
  source = "../../modules/cache"

  name                    = "${local.service}-cache"
  purpose                 = "the catalogue cache"
  node_type               = local.cache_node_type
  num_cache_clusters      = local.cache_nodes
  automatic_failover      = local.cache_failover
  maxmemory_policy        = "allkeys-lru"
  snapshot_retention_days = 0
  auth_token              = module.secrets.redis_auth_token
  subnet_ids              = module.network.private_subnet_ids
  security_group_id       = module.security.redis_security_group_id
  tags                    = local.tags
}

module "carts" {
  source = "../../modules/cache"

  name                    = "${local.service}-carts"
  purpose                 = "the cart store"
  node_type               = local.carts_node_type
  num_cache_clusters      = local.carts_nodes
  automatic_failover      = true
  maxmemory_policy        = "noeviction"
  snapshot_retention_days = local.carts_snapshot_days
  auth_token              = module.secrets.redis_auth_token
  subnet_ids              = module.network.private_subnet_ids
  security_group_id       = module.security.redis_security_group_id
  tags                    = local.tags
}

module "ecs" {
  source = "../../modules/ecs"

  name                               = local.service
  cluster_name                       = local.shared.ecs_cluster
  cluster_arn                        = local.shared.ecs_cluster_arn
  backend_image                      = "${local.shared.ecr_repository_urls["shop/backend"]}:${var.initial_image_tag}"
  frontend_image                     = "${local.shared.ecr_repository_urls["shop/frontend"]}:${var.initial_image_tag}"
  cpu                                = local.task_cpu
  memory                             = local.task_memory
  min_capacity                       = local.min_tasks
  max_capacity                       = local.max_tasks
  private_subnet_ids                 = module.network.private_subnet_ids
  app_security_group_id              = module.security.app_security_group_id
  backend_target_group_arn           = module.alb.backend_target_group_arn
  storefront_target_group_arn        = module.alb.storefront_target_group_arn
  storefront_target_group_arn_suffix = module.alb.storefront_target_group_arn_suffix
  alb_arn_suffix                     = module.alb.arn_suffix
  database_url                       = "postgresql+asyncpg://shop@${module.database.proxy_endpoint}:5432/${module.database.database_name}"
  redis_url                          = module.cache.url
  carts_redis_url                    = module.carts.url
  database_secret_arn                = module.secrets.database_secret_arn
  redis_auth_secret_arn              = module.secrets.redis_auth_secret_arn
  admin_token_secret_arn             = module.secrets.admin_token_secret_arn
  payment_webhook_secret_arn         = module.secrets.payment_webhook_secret_arn
  backend_log_group                  = module.logs.names["/shop/${local.environment}/backend"]
  frontend_log_group                 = module.logs.names["/shop/${local.environment}/frontend"]
  tags                               = local.tags
}

module "dns" {
  source = "../../modules/dns"

  zone_id                = data.aws_route53_zone.this.zone_id
  domain_name            = local.domain_name
  alb_dns_name           = module.alb.dns_name
  alb_zone_id            = module.alb.zone_id
  cdn_domain_name        = "static.${local.domain_name}"
  cdn_target_domain_name = module.storage.cdn_domain_name
  cdn_target_zone_id     = module.storage.cdn_hosted_zone_id
  tags                   = local.tags
}

module "budget" {
  source = "../../modules/budgets"

  name              = "shop-${local.environment}-monthly"
  environment       = local.environment
  monthly_limit_usd = local.monthly_budget_usd
  alert_emails      = var.budget_alert_emails
  tags              = local.tags
}
