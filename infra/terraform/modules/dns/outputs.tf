output "url" {
  description = "config/aws.yaml environments.<env>.url."
  value       = "https://${var.domain_name}"
}

output "health_check_id" {
  value = aws_route53_health_check.app.id
}
