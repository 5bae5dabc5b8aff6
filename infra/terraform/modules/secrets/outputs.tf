output "database_secret_arn" {
  value = aws_secretsmanager_secret.database.arn
}

output "database_password" {
  value     = random_password.database.result
  sensitive = true
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
