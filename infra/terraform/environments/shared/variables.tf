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

variable "github_repository" {
  description = "owner/name of the repository whose delivery workflows push images."
  type        = string
}

variable "dagster_secret_arns" {
  description = "Secrets Manager ARNs of Dagster's own storage password (DAGSTER_PG_PASSWORD_SECRET_ARN)."
  type        = list(string)
  default     = []
}

variable "restore_client_cidrs" {
  description = "Networks of the Dagster run tasks that check restored instances in the DR region."
  type        = list(string)
  default     = []
}

variable "account_budget_usd" {
  description = "Monthly budget of the whole account."
  type        = number
}

variable "budget_alert_emails" {
  type = list(string)
}
