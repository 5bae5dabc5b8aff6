variable "prefix" {
  description = "Secret name prefix, e.g. shop/staging (the database secret is <prefix>/db)."
  type        = string
}

variable "database_host" {
  description = "The RDS instance address (the rotation function connects to it)."
  type        = string
}

variable "master_username" {
  description = "The RDS master user (modules/database master_username)."
  type        = string
  default     = "shop"
}

variable "app_username" {
  description = "The first of the app's two alternating users; the rotation function names the other <name>_clone."
  type        = string
  default     = "shop_app"
}

variable "database_name" {
  type    = string
  default = "shop"
}

variable "rotation_days" {
  description = "Days between rotations of the master login."
  type        = number
  default     = 30
}

variable "app_rotation_days" {
  description = "Days between rotations of the app login (the pipeline's rotate_database_password can rotate sooner)."
  type        = number
  default     = 30
}

variable "rotation_subnet_ids" {
  description = "Private subnets the rotation function runs in (it must reach the database)."
  type        = list(string)
}

variable "rotation_security_group_id" {
  description = "Group of the rotation function: the app group (admitted by the database)."
  type        = string
}

variable "kms_key_arn" {
  type    = string
  default = null
}

variable "recovery_window_days" {
  type    = number
  default = 7
}

variable "tags" {
  description = "Tags for every resource (Project, Environment, Owner, CostCenter); Component is set here."
  type        = map(string)
}
