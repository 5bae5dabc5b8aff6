# Read by environments/staging and environments/production (terraform_remote_state), which
# pass them on as the outputs config/aws.yaml takes its values from.

output "region" {
  value = local.region
}

output "dr_region" {
  value = local.dr_region
}

output "ecs_cluster" {
  value = module.ecs_cluster.name
}

output "ecs_cluster_arn" {
  value = module.ecs_cluster.arn
}

output "ecr_registry" {
  value = module.ecr.registry
}

output "ecr_repository_urls" {
  value = module.ecr.repository_urls
}

output "backups_bucket" {
  value = module.backups.bucket
}

output "backups_copy_bucket" {
  value = module.backups.copy_bucket
}

output "dr_kms_key_id" {
  value = module.backups.dr_kms_key_arn
}

output "restore_subnet_group" {
  value = module.backups.restore_subnet_group
}

output "restore_security_groups" {
  value = module.backups.restore_security_group_ids
}

output "dagster_run_task_role_arn" {
  value = module.iam.run_task_role_arn
}

output "dagster_run_execution_role_arn" {
  value = module.iam.run_execution_role_arn
}

output "dagster_run_log_group" {
  value = module.logs.names["/shop-ops/dagster-runs"]
}

output "github_delivery_role_arn" {
  value = module.iam.github_delivery_role_arn
}
