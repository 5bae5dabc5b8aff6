variable "region" {
  type    = string
  default = "eu-central-1"
}

variable "state_bucket" {
  description = "Globally unique; every root's backend.tf names it."
  type        = string
  default     = "shop-ops-terraform-state"
}

variable "lock_table" {
  type    = string
  default = "shop-ops-terraform-lock"
}

variable "owner" {
  description = "Owner tag: the team answering for these resources."
  type        = string
  default     = "shop-ops"
}

variable "cost_center" {
  description = "CostCenter tag."
  type        = string
  default     = "shop"
}
