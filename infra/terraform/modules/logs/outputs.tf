output "names" {
  value = { for k, g in aws_cloudwatch_log_group.this : k => g.name }
}

output "arns" {
  value = { for k, g in aws_cloudwatch_log_group.this : k => g.arn }
}
