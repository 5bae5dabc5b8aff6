variable "log_groups" {
  description = "Log group name => retention in days."
  type        = map(number)
}

variable "kms_key_arn" {
  type    = string
  default = null
}

variable "tags" {
  description = "Tags for every resource (Project, Environment, Owner, CostCenter); Component is set here."
  type        = map(string)
}
