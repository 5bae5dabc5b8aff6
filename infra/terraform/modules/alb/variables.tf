variable "name" {
  description = "Load balancer name, e.g. shop-staging (target groups get -backend, -storefront)."
  type        = string
}

variable "vpc_id" {
  type = string
}

variable "public_subnet_ids" {
  type = list(string)
}

variable "security_group_id" {
  description = "The ALB group of modules/security."
  type        = string
}

variable "domain_name" {
  description = "The environment's host name, e.g. staging.shop.example."
  type        = string
}

variable "subject_alternative_names" {
  type    = list(string)
  default = []
}

variable "zone_id" {
  description = "Route53 hosted zone for the certificate's DNS validation."
  type        = string
}

variable "access_logs_bucket" {
  description = "S3 bucket for the ALB access logs (modules/storage's logs bucket)."
  type        = string
}

variable "deletion_protection" {
  type    = bool
  default = true
}

variable "tags" {
  description = "Tags for every resource (Project, Environment, Owner, CostCenter); Component is set here."
  type        = map(string)
}
