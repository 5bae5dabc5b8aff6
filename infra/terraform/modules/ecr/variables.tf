variable "repositories" {
  type    = list(string)
  default = ["shop/backend", "shop/frontend"]
}

variable "untagged_days" {
  type    = number
  default = 14
}

variable "keep_tagged" {
  description = "Tagged images kept per repository (release tags and <version>-<sha> builds)."
  type        = number
  default     = 200
}

variable "tags" {
  description = "Tags for every resource (Project, Environment, Owner, CostCenter); Component is set here."
  type        = map(string)
}
