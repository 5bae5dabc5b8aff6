variable "name" {
  type = string
}

variable "monthly_limit_usd" {
  type = number
}

variable "environment" {
  description = "Environment tag value to filter on (the tag must be activated as a cost allocation tag); null: the whole account."
  type        = string
  default     = null
}

variable "actual_alert_percent" {
  type    = number
  default = 80
}

variable "alert_emails" {
  type = list(string)
}

variable "tags" {
  description = "Tags for every resource (Project, Environment, Owner, CostCenter); Component is set here."
  type        = map(string)
}
