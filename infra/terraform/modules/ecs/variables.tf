variable "name" {
  description = "Service and task definition family (config/aws.yaml environments.<env>.ecs_service), e.g. shop-staging."
  type        = string
}

variable "cluster_name" {
  type = string
}

variable "cluster_arn" {
  type = string
}

variable "backend_image" {
  description = "First revision only (the pipeline deploys by digest afterwards), e.g. <registry>/shop/backend:0.1.0."
  type        = string
}

variable "frontend_image" {
  description = "First revision only, e.g. <registry>/shop/frontend:0.1.0."
  type        = string
}

variable "cpu" {
  description = "Task CPU units (both containers)."
  type        = number
}

variable "memory" {
  description = "Task memory in MiB (both containers)."
  type        = number
}

variable "backend_workers" {
  description = "SHOP_WORKERS: server worker processes of the backend."
  type        = number
  default     = 2
}

variable "min_capacity" {
  type = number
}

variable "max_capacity" {
  type = number
}

variable "cpu_target_percent" {
  type    = number
  default = 60
}

variable "requests_per_target" {
  description = "ALB requests per task per minute that autoscaling aims for."
  type        = number
  default     = 6000
}

variable "private_subnet_ids" {
  type = list(string)
}

variable "app_security_group_id" {
  type = string
}

variable "backend_target_group_arn" {
  type = string
}

variable "storefront_target_group_arn" {
  type = string
}

variable "storefront_target_group_arn_suffix" {
  type = string
}

variable "alb_arn_suffix" {
  type = string
}

variable "database_url" {
  description = "SHOP_DATABASE_URL without password (through RDS Proxy)."
  type        = string
}

variable "redis_url" {
  description = "SHOP_REDIS_URL: the cache (rediss://, TLS)."
  type        = string
}

variable "carts_redis_url" {
  description = "SHOP_CARTS_REDIS_URL: the cart store's primary endpoint (rediss://, TLS)."
  type        = string
}

variable "database_secret_arn" {
  type = string
}

variable "redis_auth_secret_arn" {
  type = string
}

variable "admin_token_secret_arn" {
  type = string
}

variable "payment_webhook_secret_arn" {
  type = string
}

variable "backend_log_group" {
  type = string
}

variable "frontend_log_group" {
  type = string
}

variable "tags" {
  description = "Tags for every resource (Project, Environment, Owner, CostCenter); Component is set here."
  type        = map(string)
}
