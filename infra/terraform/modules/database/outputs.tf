output "instance_identifier" {
  value = aws_db_instance.this.identifier
}

output "instance_arn" {
  value = aws_db_instance.this.arn
}

output "address" {
  value = aws_db_instance.this.address
}

output "proxy_endpoint" {
  value = aws_db_proxy.this.endpoint
}

output "replica_address" {
  value = var.read_replica ? aws_db_instance.replica[0].address : null
}

output "subnet_group_name" {
  value = aws_db_subnet_group.this.name
}

output "database_name" {
  value = aws_db_instance.this.db_name
}
