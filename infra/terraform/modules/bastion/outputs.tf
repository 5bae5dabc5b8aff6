output "instance_id" {
  description = "For `aws ssm start-session --target`."
  value       = aws_instance.this.id
}
