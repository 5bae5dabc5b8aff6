output "run_task_role_arn" {
  value = aws_iam_role.run_task.arn
}

output "run_execution_role_arn" {
  value = aws_iam_role.run_execution.arn
}

output "github_delivery_role_arn" {
  value = aws_iam_role.github_delivery.arn
}
