variable "name" {
  description = "Name prefix of the groups, e.g. shop-staging."
  type        = string
}

variable "vpc_id" {
  type = string
}

variable "app_ports" {
  description = "Container ports the ALB forwards to (backend 8000, storefront 8080)."
  type        = list(number)
  default     = [8000, 8080]
}

variable "enable_bastion" {
  description = "Create the bastion's group and admit it to the database and Redis."
  type        = bool
  default     = false
}

variable "tags" {
  description = "Tags for every resource (Project, Environment, Owner, CostCenter); Component is set here."
  type        = map(string)
}
