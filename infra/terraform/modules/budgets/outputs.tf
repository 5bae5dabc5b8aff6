output "name" {
  value = aws_budgets_budget.monthly.name
}
