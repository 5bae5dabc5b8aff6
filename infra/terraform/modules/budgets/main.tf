# AWS Budgets: a monthly cost budget (for one Environment tag, or the whole account when
# environment is null) that e-mails at a share of actual spend and when the forecast passes it.
# The pipeline's daily_budget_schedule warns mid-month too; this is AWS's own backstop.

resource "aws_budgets_budget" "monthly" {
  name         = var.name
  budget_type  = "COST"
  limit_amount = tostring(var.monthly_limit_usd)
  limit_unit   = "USD"
  time_unit    = "MONTHLY"

  dynamic "cost_filter" {
    for_each = var.environment == null ? [] : [var.environment]
    content {
      name   = "TagKeyValue"
      values = [format("user:Environment$%s", cost_filter.value)]
    }
  }

  notification {
    comparison_operator        = "GREATER_THAN"
    threshold                  = var.actual_alert_percent
    threshold_type             = "PERCENTAGE"
    notification_type          = "ACTUAL"
    subscriber_email_addresses = var.alert_emails
  }

  notification {
    comparison_operator        = "GREATER_THAN"
    threshold                  = 100
    threshold_type             = "PERCENTAGE"
    notification_type          = "FORECASTED"
    subscriber_email_addresses = var.alert_emails
  }

  tags = merge(var.tags, { Component = "budgets" })
}
