variable "github_owner" {
  description = "The organization (or user) that owns the repository."
  type        = string
}

variable "repository" {
  description = "The repository's name (without the owner)."
  type        = string
}

variable "production_reviewers" {
  description = "GitHub logins allowed to approve a production deploy (the production environment's required reviewers)."
  type        = list(string)

  validation {
    condition     = length(var.production_reviewers) > 0 && length(var.production_reviewers) <= 6
    error_message = "production_reviewers needs 1 to 6 logins (GitHub's limit for an environment)."
  }
}

variable "required_approvals" {
  description = "Approving reviews a pull request into main needs."
  type        = number
  default     = 1

  validation {
    condition     = var.required_approvals >= 1 && var.required_approvals <= 6
    error_message = "required_approvals must be between 1 and 6."
  }
}

variable "dagster_url" {
  description = "The Dagster webserver as the self-hosted runner reaches it inside the operations network (never public)."
  type        = string
}
