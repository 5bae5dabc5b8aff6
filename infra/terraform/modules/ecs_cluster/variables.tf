variable "name" {
  description = "Cluster name (config/aws.yaml aws.ecs_cluster)."
  type        = string
}

variable "tags" {
  description = "Tags for every resource (Project, Environment, Owner, CostCenter); Component is set here."
  type        = map(string)
}
