variable "name" {
  description = "Replication group id, e.g. shop-staging."
  type        = string
}

variable "engine_version" {
  type    = string
  default = "7.1"
}

variable "node_type" {
  type = string
}

variable "num_cache_clusters" {
  description = "Nodes: 1 primary plus replicas."
  type        = number
}

variable "automatic_failover" {
  description = "Automatic failover and Multi-AZ (needs num_cache_clusters >= 2)."
  type        = bool
}

variable "auth_token" {
  description = "Redis AUTH token (modules/secrets generates and stores it)."
  type        = string
  sensitive   = true
}

variable "kms_key_arn" {
  type    = string
  default = null
}

variable "snapshot_retention_days" {
  type    = number
  default = 1
}

variable "subnet_ids" {
  type = list(string)
}

variable "security_group_id" {
  description = "The Redis group of modules/security."
  type        = string
}

variable "tags" {
  description = "Tags for every resource (Project, Environment, Owner, CostCenter); Component is set here."
  type        = map(string)
}
