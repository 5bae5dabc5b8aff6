# One environment's ECS service: a Fargate task with the `backend` and `frontend` containers
# (the names shop_ops/release/ecs.py replaces images in), registered in the ALB's backend and
# storefront target groups, rolling updates with the deployment circuit breaker (rollback on),
# autoscaling on CPU and on ALB requests per target.
#
# The pipeline registers every later task definition revision itself (new images by digest,
# everything else copied), so Terraform creates the first revision and then ignores which
# revision the service runs; autoscaling owns desired_count.

data "aws_region" "current" {}

locals {
  backend_environment = [
    { name = "SHOP_HOST", value = "0.0.0.0" },
    { name = "SHOP_PORT", value = "8000" },
    { name = "SHOP_WORKERS", value = tostring(var.backend_workers) },
    { name = "SHOP_DATABASE_URL", value = var.database_url },
    { name = "SHOP_REDIS_URL", value = var.redis_url },
    # The cart store's primary endpoint: ElastiCache moves its DNS name on failover (no Sentinel on aws).
    { name = "SHOP_CARTS_REDIS_URL", value = var.carts_redis_url },
  ]
  backend_secrets = [
    # The app login's two keys: AWS's alternating-users rotation switches `username` between two users
    # (modules/secrets), so the user comes from the secret too (SHOP_DATABASE_USER overrides the URL's).
    { name = "SHOP_DATABASE_USER", valueFrom = "${var.database_secret_arn}:username::" },
    { name = "SHOP_DATABASE_PASSWORD", valueFrom = "${var.database_secret_arn}:password::" },
    # The one AUTH token of both Redis (the cache and the cart store).
    { name = "SHOP_REDIS_PASSWORD", valueFrom = var.redis_auth_secret_arn },
    { name = "SHOP_ADMIN_TOKEN", valueFrom = var.admin_token_secret_arn },
    { name = "SHOP_PAYMENT_WEBHOOK_SECRET", valueFrom = var.payment_webhook_secret_arn },
  ]

  # Both containers: read-only root filesystem, the images' unprivileged user, no Linux capabilities.
  # Fargate has no tmpfs, so /tmp is a task volume (Fargate's ephemeral storage) per container: the
  # backend's temporary files, the storefront's nginx pid and temp folders (/tmp/nginx).
  hardening = {
    readonlyRootFilesystem = true
    user                   = "10001"
    privileged             = false
    linuxParameters        = { capabilities = { drop = ["ALL"] } }
  }
}

data "aws_iam_policy_document" "tasks_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["ecs-tasks.amazonaws.com"]
    }
  }
}

# Execution role: pull from ECR, write the two log groups, read the four secrets at start.
resource "aws_iam_role" "execution" {
  name               = "${var.name}-execution"
  assume_role_policy = data.aws_iam_policy_document.tasks_assume.json

  tags = merge(var.tags, { Component = "compute" })
}

resource "aws_iam_role_policy_attachment" "execution_ecs" {
  role       = aws_iam_role.execution.name
  policy_arn = "arn:aws:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy"
}

data "aws_iam_policy_document" "execution_secrets" {
  statement {
    actions   = ["secretsmanager:GetSecretValue"]
    resources = [var.database_secret_arn, var.redis_auth_secret_arn, var.admin_token_secret_arn, var.payment_webhook_secret_arn]
  }
}

resource "aws_iam_role_policy" "execution_secrets" {
  name   = "read-shop-secrets"
  role   = aws_iam_role.execution.id
  policy = data.aws_iam_policy_document.execution_secrets.json
}

# Task role: the shop calls no AWS API today; the role exists so one can be granted without a new revision.
resource "aws_iam_role" "task" {
  name               = "${var.name}-task"
  assume_role_policy = data.aws_iam_policy_document.tasks_assume.json

  tags = merge(var.tags, { Component = "compute" })
}

resource "aws_ecs_task_definition" "this" {
  family                   = var.name
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = var.cpu
  memory                   = var.memory
  execution_role_arn       = aws_iam_role.execution.arn
  task_role_arn            = aws_iam_role.task.arn

  runtime_platform {
    operating_system_family = "LINUX"
    cpu_architecture        = "X86_64"
  }

  container_definitions = jsonencode([
    merge(local.hardening, {
      name         = "backend"
      image        = var.backend_image
      essential    = true
      portMappings = [{ containerPort = 8000, protocol = "tcp" }]
      environment  = local.backend_environment
      secrets      = local.backend_secrets
      mountPoints  = [{ sourceVolume = "backend-tmp", containerPath = "/tmp", readOnly = false }]
      logConfiguration = {
        logDriver = "awslogs"
        options = {
          awslogs-group         = var.backend_log_group
          awslogs-region        = data.aws_region.current.name
          awslogs-stream-prefix = "backend"
        }
      }
    }),
    merge(local.hardening, {
      name        = "frontend"
      image       = var.frontend_image
      essential   = true
      mountPoints = [{ sourceVolume = "frontend-tmp", containerPath = "/tmp", readOnly = false }]
      # Same task, same network namespace: the storefront's nginx proxies /api/ to the backend on loopback.
      environment  = [{ name = "BACKEND_URL", value = "http://127.0.0.1:8000" }]
      portMappings = [{ containerPort = 8080, protocol = "tcp" }]
      logConfiguration = {
        logDriver = "awslogs"
        options = {
          awslogs-group         = var.frontend_log_group
          awslogs-region        = data.aws_region.current.name
          awslogs-stream-prefix = "frontend"
        }
      }
    }),
  ])

  volume {
    name = "backend-tmp"
  }

  volume {
    name = "frontend-tmp"
  }

  tags = merge(var.tags, { Component = "compute" })
}

resource "aws_ecs_service" "this" {
  name                               = var.name
  cluster                            = var.cluster_arn
  task_definition                    = aws_ecs_task_definition.this.arn
  desired_count                      = var.min_capacity
  launch_type                        = "FARGATE"
  platform_version                   = "LATEST"
  health_check_grace_period_seconds  = 60
  enable_execute_command             = false
  propagate_tags                     = "SERVICE"
  deployment_minimum_healthy_percent = 100
  deployment_maximum_percent         = 200

  deployment_controller {
    type = "ECS"
  }

  # The pipeline relies on it (shop_ops/release/ecs.py sets it again on every update).
  deployment_circuit_breaker {
    enable   = true
    rollback = true
  }

  network_configuration {
    subnets          = var.private_subnet_ids
    security_groups  = [var.app_security_group_id]
    assign_public_ip = false
  }

  load_balancer {
    target_group_arn = var.backend_target_group_arn
    container_name   = "backend"
    container_port   = 8000
  }

  load_balancer {
    target_group_arn = var.storefront_target_group_arn
    container_name   = "frontend"
    container_port   = 8080
  }

  lifecycle {
    ignore_changes = [task_definition, desired_count]
  }

  tags = merge(var.tags, { Component = "compute" })
}

resource "aws_appautoscaling_target" "this" {
  service_namespace  = "ecs"
  resource_id        = "service/${var.cluster_name}/${aws_ecs_service.this.name}"
  scalable_dimension = "ecs:service:DesiredCount"
  min_capacity       = var.min_capacity
  max_capacity       = var.max_capacity

  tags = merge(var.tags, { Component = "compute" })
}

resource "aws_appautoscaling_policy" "cpu" {
  name               = "${var.name}-cpu"
  policy_type        = "TargetTrackingScaling"
  service_namespace  = aws_appautoscaling_target.this.service_namespace
  resource_id        = aws_appautoscaling_target.this.resource_id
  scalable_dimension = aws_appautoscaling_target.this.scalable_dimension

  target_tracking_scaling_policy_configuration {
    target_value       = var.cpu_target_percent
    scale_in_cooldown  = 300
    scale_out_cooldown = 60

    predefined_metric_specification {
      predefined_metric_type = "ECSServiceAverageCPUUtilization"
    }
  }
}

resource "aws_appautoscaling_policy" "requests" {
  name               = "${var.name}-requests"
  policy_type        = "TargetTrackingScaling"
  service_namespace  = aws_appautoscaling_target.this.service_namespace
  resource_id        = aws_appautoscaling_target.this.resource_id
  scalable_dimension = aws_appautoscaling_target.this.scalable_dimension

  target_tracking_scaling_policy_configuration {
    target_value       = var.requests_per_target
    scale_in_cooldown  = 300
    scale_out_cooldown = 60

    # Every page and API call enters through the storefront's target group (/api/ is proxied too
    # when it comes from the SPA's own origin), so its count per task is the load signal.
    predefined_metric_specification {
      predefined_metric_type = "ALBRequestCountPerTarget"
      resource_label         = "${var.alb_arn_suffix}/${var.storefront_target_group_arn_suffix}"
    }
  }
}
