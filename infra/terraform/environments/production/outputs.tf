# Every value config/aws.yaml needs, by the name of the setting (the mapping is in
# infra/terraform/README.md and tests/infra/test_terraform_static.py). The shared names come
# from environments/shared and are passed on, so one `terraform output` per environment has all.

# aws.*
output "region" {
  value = local.shared.region
}

output "ecs_cluster" {
  value = local.shared.ecs_cluster
}

output "ecr_registry" {
  value = local.shared.ecr_registry
}

output "backups_bucket" {
  value = local.shared.backups_bucket
}

output "backups_copy_bucket" {
  value = local.shared.backups_copy_bucket
}

output "dr_region" {
  value = local.shared.dr_region
}

output "restore_subnet_group" {
  value = local.shared.restore_subnet_group
}

output "restore_security_groups" {
  value = local.shared.restore_security_groups
}

output "dr_kms_key_id" {
  value = local.shared.dr_kms_key_id
}

# images.*
output "backend_repository" {
  value = "shop/backend"
}

output "frontend_repository" {
  value = "shop/frontend"
}

# environments.<this environment>.*
output "ecs_service" {
  value = module.ecs.service_name
}

output "database_secret_arn" {
  value = module.secrets.database_secret_arn
}

output "url" {
  value = module.dns.url
}

output "db_instance" {
  value = module.database.instance_identifier
}

# For people and the Dagster deployment (deploy/ecs/dagster.yaml), not read by config/aws.yaml.
output "dagster_run_task_role_arn" {
  value = local.shared.dagster_run_task_role_arn
}

output "dagster_run_execution_role_arn" {
  value = local.shared.dagster_run_execution_role_arn
}

output "dagster_run_log_group" {
  value = local.shared.dagster_run_log_group
}

output "alb_dns_name" {
  value = module.alb.dns_name
}

output "cdn_domain_name" {
  value = module.storage.cdn_domain_name
}

output "assets_bucket" {
  value = module.storage.assets_bucket
}

output "database_proxy_endpoint" {
  value = module.database.proxy_endpoint
}

output "redis_cache_primary_endpoint" {
  value = module.cache.primary_endpoint
}

output "redis_carts_primary_endpoint" {
  value = module.carts.primary_endpoint
}

output "bastion_instance_id" {
  value = var.enable_bastion ? module.bastion[0].instance_id : null
}
