# Security groups: the ALB admits the internet on 443 and 80, the app admits only the ALB, the
# database and Redis (one group for both replication groups: the cache and the cart store) admit
# only the app (and the optional bastion). Rules are separate resources so each one is visible
# (tests/infra/test_terraform_static.py reads them).

resource "aws_security_group" "alb" {
  #checkov:skip=CKV2_AWS_5:attached to the load balancer in modules/alb (security_groups = [var.security_group_id]), through this module's output, which checkov does not follow
  name        = "${var.name}-alb"
  description = "ALB: HTTPS and HTTP (redirected) from the internet"
  vpc_id      = var.vpc_id

  tags = merge(var.tags, { Component = "network", Name = "${var.name}-alb" })
}

resource "aws_vpc_security_group_ingress_rule" "alb_https" {
  security_group_id = aws_security_group.alb.id
  description       = "HTTPS from the internet"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = "0.0.0.0/0"

  tags = merge(var.tags, { Component = "network" })
}

resource "aws_vpc_security_group_ingress_rule" "alb_http" {
  #checkov:skip=CKV_AWS_260:port 80 is open to the internet only for the ALB's HTTP listener, which answers every request with a 301 to HTTPS (modules/alb) and forwards nothing
  security_group_id = aws_security_group.alb.id
  description       = "HTTP from the internet, only to be redirected to HTTPS"
  ip_protocol       = "tcp"
  from_port         = 80
  to_port           = 80
  cidr_ipv4         = "0.0.0.0/0"

  tags = merge(var.tags, { Component = "network" })
}

resource "aws_vpc_security_group_egress_rule" "alb_to_app" {
  for_each = toset([for port in var.app_ports : tostring(port)])

  security_group_id            = aws_security_group.alb.id
  description                  = "to the app containers"
  ip_protocol                  = "tcp"
  from_port                    = tonumber(each.value)
  to_port                      = tonumber(each.value)
  referenced_security_group_id = aws_security_group.app.id

  tags = merge(var.tags, { Component = "network" })
}

resource "aws_security_group" "app" {
  #checkov:skip=CKV2_AWS_5:attached to the ECS service in modules/ecs and to the database rotation function in modules/secrets, through this module's output, which checkov does not follow
  name        = "${var.name}-app"
  description = "ECS tasks of the shop (backend and storefront): only from the ALB"
  vpc_id      = var.vpc_id

  tags = merge(var.tags, { Component = "compute", Name = "${var.name}-app" })
}

resource "aws_vpc_security_group_ingress_rule" "app_from_alb" {
  for_each = toset([for port in var.app_ports : tostring(port)])

  security_group_id            = aws_security_group.app.id
  description                  = "from the ALB"
  ip_protocol                  = "tcp"
  from_port                    = tonumber(each.value)
  to_port                      = tonumber(each.value)
  referenced_security_group_id = aws_security_group.alb.id

  tags = merge(var.tags, { Component = "compute" })
}

# Outbound: image pulls (ECR through the NAT gateway), Secrets Manager, CloudWatch Logs, the database, Redis.
resource "aws_vpc_security_group_egress_rule" "app_https" {
  security_group_id = aws_security_group.app.id
  description       = "HTTPS to AWS APIs and ECR"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = "0.0.0.0/0"

  tags = merge(var.tags, { Component = "compute" })
}

resource "aws_vpc_security_group_egress_rule" "app_to_database" {
  security_group_id            = aws_security_group.app.id
  description                  = "to PostgreSQL (RDS Proxy)"
  ip_protocol                  = "tcp"
  from_port                    = 5432
  to_port                      = 5432
  referenced_security_group_id = aws_security_group.database.id

  tags = merge(var.tags, { Component = "compute" })
}

resource "aws_vpc_security_group_egress_rule" "app_to_redis" {
  security_group_id            = aws_security_group.app.id
  description                  = "to Redis"
  ip_protocol                  = "tcp"
  from_port                    = 6379
  to_port                      = 6379
  referenced_security_group_id = aws_security_group.redis.id

  tags = merge(var.tags, { Component = "compute" })
}

resource "aws_security_group" "database" {
  #checkov:skip=CKV2_AWS_5:attached to the RDS instance, its replica and RDS Proxy in modules/database, through this module's output, which checkov does not follow
  name        = "${var.name}-database"
  description = "RDS PostgreSQL and RDS Proxy: only from the app (and the bastion)"
  vpc_id      = var.vpc_id

  tags = merge(var.tags, { Component = "database", Name = "${var.name}-database" })
}

resource "aws_vpc_security_group_ingress_rule" "database_from_app" {
  security_group_id            = aws_security_group.database.id
  description                  = "PostgreSQL from the app"
  ip_protocol                  = "tcp"
  from_port                    = 5432
  to_port                      = 5432
  referenced_security_group_id = aws_security_group.app.id

  tags = merge(var.tags, { Component = "database" })
}

# RDS Proxy reaches the instance through the same group.
resource "aws_vpc_security_group_ingress_rule" "database_from_self" {
  security_group_id            = aws_security_group.database.id
  description                  = "PostgreSQL from RDS Proxy (same group)"
  ip_protocol                  = "tcp"
  from_port                    = 5432
  to_port                      = 5432
  referenced_security_group_id = aws_security_group.database.id

  tags = merge(var.tags, { Component = "database" })
}

resource "aws_vpc_security_group_egress_rule" "database_to_self" {
  security_group_id            = aws_security_group.database.id
  description                  = "RDS Proxy to the instance"
  ip_protocol                  = "tcp"
  from_port                    = 5432
  to_port                      = 5432
  referenced_security_group_id = aws_security_group.database.id

  tags = merge(var.tags, { Component = "database" })
}

resource "aws_vpc_security_group_ingress_rule" "database_from_bastion" {
  count = var.enable_bastion ? 1 : 0

  security_group_id            = aws_security_group.database.id
  description                  = "PostgreSQL from the bastion"
  ip_protocol                  = "tcp"
  from_port                    = 5432
  to_port                      = 5432
  referenced_security_group_id = aws_security_group.bastion[0].id

  tags = merge(var.tags, { Component = "database" })
}

resource "aws_security_group" "redis" {
  #checkov:skip=CKV2_AWS_5:attached to both ElastiCache replication groups (the cache and the cart store, modules/cache), through this module's output, which checkov does not follow
  name        = "${var.name}-redis"
  description = "ElastiCache Redis, cache and cart store: only from the app (and the bastion)"
  vpc_id      = var.vpc_id

  tags = merge(var.tags, { Component = "cache", Name = "${var.name}-redis" })
}

resource "aws_vpc_security_group_ingress_rule" "redis_from_app" {
  security_group_id            = aws_security_group.redis.id
  description                  = "Redis (cache and cart store) from the app"
  ip_protocol                  = "tcp"
  from_port                    = 6379
  to_port                      = 6379
  referenced_security_group_id = aws_security_group.app.id

  tags = merge(var.tags, { Component = "cache" })
}

resource "aws_vpc_security_group_ingress_rule" "redis_from_bastion" {
  count = var.enable_bastion ? 1 : 0

  security_group_id            = aws_security_group.redis.id
  description                  = "Redis from the bastion"
  ip_protocol                  = "tcp"
  from_port                    = 6379
  to_port                      = 6379
  referenced_security_group_id = aws_security_group.bastion[0].id

  tags = merge(var.tags, { Component = "cache" })
}

# The bastion has no inbound rule at all: people reach it through SSM Session Manager.
resource "aws_security_group" "bastion" {
  #checkov:skip=CKV2_AWS_5:attached to the bastion instance in modules/bastion, through this module's output, which checkov does not follow
  count = var.enable_bastion ? 1 : 0

  name        = "${var.name}-bastion"
  description = "Bastion (SSM Session Manager only, no inbound)"
  vpc_id      = var.vpc_id

  tags = merge(var.tags, { Component = "bastion", Name = "${var.name}-bastion" })
}

resource "aws_vpc_security_group_egress_rule" "bastion_https" {
  count = var.enable_bastion ? 1 : 0

  security_group_id = aws_security_group.bastion[0].id
  description       = "HTTPS to SSM"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = "0.0.0.0/0"

  tags = merge(var.tags, { Component = "bastion" })
}

resource "aws_vpc_security_group_egress_rule" "bastion_to_database" {
  count = var.enable_bastion ? 1 : 0

  security_group_id            = aws_security_group.bastion[0].id
  description                  = "to PostgreSQL"
  ip_protocol                  = "tcp"
  from_port                    = 5432
  to_port                      = 5432
  referenced_security_group_id = aws_security_group.database.id

  tags = merge(var.tags, { Component = "bastion" })
}

resource "aws_vpc_security_group_egress_rule" "bastion_to_redis" {
  count = var.enable_bastion ? 1 : 0

  security_group_id            = aws_security_group.bastion[0].id
  description                  = "to Redis"
  ip_protocol                  = "tcp"
  from_port                    = 6379
  to_port                      = 6379
  referenced_security_group_id = aws_security_group.redis.id

  tags = merge(var.tags, { Component = "bastion" })
}
