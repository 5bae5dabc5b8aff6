variable "name" {
  description = "Bucket name prefix, globally unique, e.g. shop-ops-staging (-assets, -logs)."
  type        = string
}

variable "cdn_domain_name" {
  description = "CloudFront's custom domain for the static assets, e.g. static.staging.shop.example."
  type        = string
}

variable "zone_id" {
  description = "Route53 zone of cdn_domain_name (certificate validation)."
  type        = string
}

variable "price_class" {
  type    = string
  default = "PriceClass_100"
}

variable "log_retention_days" {
  description = "Access logs (ALB, CloudFront, S3) are deleted after this many days."
  type        = number
  default     = 365
}

variable "tags" {
  description = "Tags for every resource (Project, Environment, Owner, CostCenter); Component is set here."
  type        = map(string)
}
