variable "name" {
  description = "Name prefix of the VPC and its parts, e.g. shop-staging."
  type        = string
}

variable "cidr_block" {
  description = "The VPC's CIDR block (a /16: subnets are /20 slices of it)."
  type        = string
}

variable "az_count" {
  description = "Availability zones to spread the subnets over."
  type        = number
  default     = 2

  validation {
    condition     = var.az_count >= 2
    error_message = "az_count must be at least 2 (the ALB and Multi-AZ RDS need two zones)."
  }
}

variable "single_nat_gateway" {
  description = "One NAT gateway for all private subnets (cheaper, not zone-redundant)."
  type        = bool
  default     = false
}

variable "flow_log_retention_days" {
  description = "Retention of the VPC flow logs."
  type        = number
  default     = 30
}

variable "tags" {
  description = "Tags for every resource (Project, Environment, Owner, CostCenter); Component is set here."
  type        = map(string)
}
