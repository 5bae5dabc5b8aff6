variable "name" {
  type = string
}

variable "subnet_id" {
  description = "A private subnet."
  type        = string
}

variable "security_group_id" {
  description = "The bastion group of modules/security."
  type        = string
}

variable "instance_type" {
  type    = string
  default = "t4g.nano"
}

variable "tags" {
  description = "Tags for every resource (Project, Environment, Owner, CostCenter); Component is set here."
  type        = map(string)
}
