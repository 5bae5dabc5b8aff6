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

variable "initial_image_tag" {
  description = "Release tag of the first task definition revision; the pipeline deploys by digest afterwards."
  type        = string
}

variable "enable_bastion" {
  description = "Create the SSM-only bastion and admit it to the database and Redis."
  type        = bool
  default     = false
}

variable "budget_alert_emails" {
  type = list(string)
}
