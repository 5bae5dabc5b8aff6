github_repository   = "example-org/shop-ops"
# A placeholder until the cost estimate asset (costs group) gives the figure.
account_budget_usd  = 1500
budget_alert_emails = ["ops@shop.example"]
