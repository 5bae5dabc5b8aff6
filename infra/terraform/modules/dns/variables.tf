variable "zone_id" {
  type = string
}

variable "domain_name" {
  description = "The environment's host name (config/aws.yaml environments.<env>.url without https://)."
  type        = string
}

variable "alb_dns_name" {
  type = string
}

variable "alb_zone_id" {
  type = string
}

variable "cdn_domain_name" {
  type = string
}

variable "cdn_target_domain_name" {
  description = "The CloudFront distribution's domain name."
  type        = string
}

variable "cdn_target_zone_id" {
  type = string
}

variable "tags" {
  description = "Tags for every resource (Project, Environment, Owner, CostCenter); Component is set here."
  type        = map(string)
}
