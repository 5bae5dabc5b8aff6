# ElastiCache Redis 7 (carts and the catalogue cache): a replication group with an auth
# token, TLS in transit, encryption at rest, allkeys-lru eviction, automatic failover and
# Multi-AZ when the environment has more than one node.

resource "aws_elasticache_subnet_group" "this" {
  name       = var.name
  subnet_ids = var.subnet_ids

  tags = merge(var.tags, { Component = "cache" })
}

resource "aws_elasticache_parameter_group" "this" {
  name   = "${var.name}-redis7"
  family = "redis7"

  parameter {
    name  = "maxmemory-policy"
    value = "allkeys-lru"
  }

  tags = merge(var.tags, { Component = "cache" })
}

resource "aws_elasticache_replication_group" "this" {
  #checkov:skip=CKV2_AWS_50:automatic failover and Multi-AZ follow var.automatic_failover: on in production (2 nodes), off in staging, whose single cache.t4g.micro node has no replica to fail over to (staging carts may be lost on a node failure)
  replication_group_id = var.name
  description          = "Redis for ${var.name}: carts and the catalogue cache"
  engine               = "redis"
  engine_version       = var.engine_version
  node_type            = var.node_type
  num_cache_clusters   = var.num_cache_clusters
  port                 = 6379

  parameter_group_name = aws_elasticache_parameter_group.this.name
  subnet_group_name    = aws_elasticache_subnet_group.this.name
  security_group_ids   = [var.security_group_id]

  automatic_failover_enabled = var.automatic_failover
  multi_az_enabled           = var.automatic_failover

  at_rest_encryption_enabled = true
  transit_encryption_enabled = true
  auth_token                 = var.auth_token
  auth_token_update_strategy = "ROTATE"
  kms_key_id                 = var.kms_key_arn

  snapshot_retention_limit   = var.snapshot_retention_days
  snapshot_window            = "01:00-02:00"
  maintenance_window         = "sun:04:30-sun:05:30"
  auto_minor_version_upgrade = true
  apply_immediately          = false

  tags = merge(var.tags, { Component = "cache" })

  lifecycle {
    precondition {
      condition     = !var.automatic_failover || var.num_cache_clusters >= 2
      error_message = "automatic_failover needs num_cache_clusters >= 2 (a primary and a replica)."
    }
  }
}
