output "required_checks" {
  value = local.required_checks
}

output "environments" {
  value = { for name, env in github_repository_environment.this : name => env.environment }
}
