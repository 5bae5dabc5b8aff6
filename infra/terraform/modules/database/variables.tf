variable "identifier" {
  description = "RDS instance identifier (config/aws.yaml environments.<env>.db_instance), e.g. shop-staging."
  type        = string
}

variable "engine_version" {
  type    = string
  default = "15"
}

variable "instance_class" {
  type = string
}

variable "allocated_storage_gb" {
  type = number
}

variable "max_allocated_storage_gb" {
  description = "Storage autoscaling ceiling."
  type        = number
}

variable "database_name" {
  type    = string
  default = "shop"
}

variable "master_username" {
  type    = string
  default = "shop"
}

variable "master_password" {
  description = "Initial password only (modules/secrets generates it; rotation replaces it)."
  type        = string
  sensitive   = true
}

variable "secret_arns" {
  description = "The database secrets (username/password JSON, one per user) RDS Proxy logs in with: master and app."
  type        = list(string)
}

variable "multi_az" {
  type = bool
}

variable "read_replica" {
  type    = bool
  default = false
}

variable "replica_instance_class" {
  type    = string
  default = null
}

variable "backup_retention_days" {
  description = "Automated backups and point-in-time recovery window."
  type        = number
  default     = 7

  validation {
    condition     = var.backup_retention_days >= 7
    error_message = "backup_retention_days must be at least 7."
  }
}

variable "slow_query_ms" {
  description = "log_min_duration_statement: statements slower than this are logged."
  type        = number
  default     = 250
}

variable "monitoring_interval" {
  description = "Enhanced monitoring interval in seconds (1, 5, 10, 15, 30 or 60)."
  type        = number
  default     = 60
}

variable "log_retention_days" {
  description = "Days CloudWatch keeps the exported PostgreSQL and upgrade logs"
  type        = number
  default     = 30
}

variable "kms_key_arn" {
  description = "KMS key for storage encryption (null: the AWS-managed RDS key)."
  type        = string
  default     = null
}

variable "deletion_protection" {
  type    = bool
  default = true
}

variable "subnet_ids" {
  type = list(string)
}

variable "security_group_id" {
  description = "The database group of modules/security."
  type        = string
}

variable "tags" {
  description = "Tags for every resource (Project, Environment, Owner, CostCenter); Component is set here."
  type        = map(string)
}
