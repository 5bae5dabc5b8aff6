variable "name" {
  description = "Role name prefix, e.g. shop-ops."
  type        = string
}

variable "ecs_cluster_name" {
  type = string
}

variable "ecs_service_names" {
  description = "The environments' services (config/aws.yaml environments.<env>.ecs_service); task definition families have the same names."
  type        = list(string)
}

variable "passable_role_arns" {
  description = "Task and execution roles of those services (a new revision passes them again)."
  type        = list(string)
  default     = []
}

variable "ecr_repository_arns" {
  type = list(string)
}

variable "backups_bucket_arn" {
  type = string
}

variable "backups_copy_bucket_arn" {
  type = string
}

variable "kms_key_arns" {
  description = "Keys for encrypted snapshot copies (the DR region's key)."
  type        = list(string)
}

variable "readable_secret_arns" {
  description = "Secrets the runs read (database logins, admin tokens). ARNs with a trailing -?????? wildcard are fine."
  type        = list(string)
}

variable "rotatable_secret_arns" {
  description = "App database logins rotate_database_password rotates (ARNs with a trailing -?????? wildcard)."
  type        = list(string)
}

variable "rotation_function_arns" {
  description = "Their rotation functions (modules/secrets: <prefix>-db-rotation)."
  type        = list(string)
}

variable "dagster_secret_arns" {
  description = "Secrets the run execution role injects (DAGSTER_PG_PASSWORD_SECRET_ARN)."
  type        = list(string)
  default     = []
}

variable "run_log_group_arn" {
  type = string
}

variable "github_repository" {
  description = "owner/name of the GitHub repository whose workflows may push images."
  type        = string
}

variable "tags" {
  description = "Tags for every resource (Project, Environment, Owner, CostCenter); Component is set here."
  type        = map(string)
}
