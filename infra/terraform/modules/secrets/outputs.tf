output "database_secret_arn" {
  description = "The app login (alternating users): what the ECS tasks and the pipeline read."
  value       = aws_secretsmanager_secret.database.arn
}

output "master_secret_arn" {
  value = aws_secretsmanager_secret.master.arn
}

output "master_password" {
  description = "The master user's initial password (modules/database; rotation replaces it)."
  value       = random_password.database.result
  sensitive   = true
}

output "redis_auth_secret_arn" {
  value = aws_secretsmanager_secret.redis.arn
}

output "redis_auth_token" {
  value     = random_password.redis.result
  sensitive = true
}

output "admin_token_secret_arn" {
  value = aws_secretsmanager_secret.admin_token.arn
}

output "payment_webhook_secret_arn" {
  value = aws_secretsmanager_secret.payment_webhook_secret.arn
}
