variable "bucket_name" {
  description = "config/aws.yaml aws.backups_bucket."
  type        = string
}

variable "copy_bucket_name" {
  description = "config/aws.yaml aws.backups_copy_bucket (in the DR region)."
  type        = string
}

variable "noncurrent_days" {
  description = "Old versions of overwritten or deleted backup objects are kept this long."
  type        = number
  default     = 30
}

variable "restore_cidr_block" {
  description = "CIDR of the small restore-test VPC in the DR region."
  type        = string
  default     = "10.90.0.0/20"
}

variable "restore_client_cidrs" {
  description = "Networks whose run tasks check restored instances (reached through peering or a transit gateway, not built here)."
  type        = list(string)
  default     = []
}

variable "tags" {
  description = "Tags for every resource (Project, Environment, Owner, CostCenter); Component is set here."
  type        = map(string)
}
