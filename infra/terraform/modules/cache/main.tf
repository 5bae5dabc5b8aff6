# One ElastiCache Redis 7 replication group with its own parameter group: an auth token, TLS in
# transit, encryption at rest, the eviction policy it is given, daily snapshots when asked for,
# automatic failover and Multi-AZ when it has a replica. Each environment calls it twice: the
# cache (allkeys-lru, no snapshots) and the cart store (noeviction, a replica, snapshots).

resource "aws_elasticache_subnet_group" "this" {
  name       = var.name
  subnet_ids = var.subnet_ids

  tags = merge(var.tags, { Component = "cache" })
}

resource "aws_elasticache_parameter_group" "this" {
  name        = "${var.name}-redis7"
  family      = "redis7"
  description = "Redis 7 for ${var.name}: maxmemory-policy ${var.maxmemory_policy}"

  parameter {
    name  = "maxmemory-policy"
    value = var.maxmemory_policy
  }

  tags = merge(var.tags, { Component = "cache" })
}

resource "aws_elasticache_replication_group" "this" {
  #checkov:skip=CKV2_AWS_50:automatic failover and Multi-AZ follow var.automatic_failover: on for the cart stores of both environments and for production's cache; off only for staging's single-node cache, which holds nothing that PostgreSQL does not (the shop serves the catalogue from PostgreSQL while it is gone)
  replication_group_id = var.name
  description          = "Redis for ${var.name}: ${var.purpose}"
  engine               = "redis"
  engine_version       = var.engine_version
  node_type            = var.node_type
  num_cache_clusters   = var.num_cache_clusters
  port                 = 6379

  parameter_group_name = aws_elasticache_parameter_group.this.name
  subnet_group_name    = aws_elasticache_subnet_group.this.name
  security_group_ids   = [var.security_group_id]

  # The primary endpoint's DNS name moves to the promoted replica: clients reconnect, no Sentinel.
  automatic_failover_enabled = var.automatic_failover
  multi_az_enabled           = var.automatic_failover

  at_rest_encryption_enabled = true
  transit_encryption_enabled = true
  auth_token                 = var.auth_token
  auth_token_update_strategy = "ROTATE"
  kms_key_id                 = var.kms_key_arn

  # ElastiCache has no AOF for Redis 7: durability is the replica (Multi-AZ) plus these snapshots,
  # taken from a replica when there is one. 0 = none.
  snapshot_retention_limit   = var.snapshot_retention_days
  snapshot_window            = var.snapshot_retention_days > 0 ? "01:00-02:00" : null
  final_snapshot_identifier  = var.snapshot_retention_days > 0 ? "${var.name}-final" : null
  maintenance_window         = "sun:04:30-sun:05:30"
  auto_minor_version_upgrade = true
  apply_immediately          = false

  tags = merge(var.tags, { Component = "cache" })

  lifecycle {
    precondition {
      condition     = !var.automatic_failover || var.num_cache_clusters >= 2
      error_message = "automatic_failover needs num_cache_clusters >= 2 (a primary and a replica)."
    }
    # A store that refuses to evict holds data the shop cannot rebuild: it must survive a node.
    precondition {
      condition     = var.maxmemory_policy != "noeviction" || (var.automatic_failover && var.snapshot_retention_days >= 1)
      error_message = "maxmemory_policy noeviction (a store, not a cache) needs automatic_failover and snapshot_retention_days >= 1."
    }
  }
}
