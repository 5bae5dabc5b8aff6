variable "name" {
  description = "Replication group id, e.g. shop-staging-cache or shop-staging-carts."
  type        = string
}

variable "purpose" {
  description = "What it holds, for the description, e.g. \"the catalogue cache\"."
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

variable "maxmemory_policy" {
  description = "allkeys-lru for a cache; noeviction for a store whose keys must not go (the carts)."
  type        = string

  validation {
    condition     = contains(["allkeys-lru", "volatile-lru", "allkeys-lfu", "volatile-lfu", "volatile-ttl", "noeviction"], var.maxmemory_policy)
    error_message = "maxmemory_policy must be a Redis 7 policy: allkeys-lru, volatile-lru, allkeys-lfu, volatile-lfu, volatile-ttl or noeviction."
  }
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
  description = "Daily snapshots kept this many days (0: none, for a cache)."
  type        = number

  validation {
    condition     = var.snapshot_retention_days >= 0 && var.snapshot_retention_days <= 35
    error_message = "snapshot_retention_days must be between 0 and 35."
  }
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
