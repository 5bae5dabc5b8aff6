initial_image_tag   = "0.1.0"
enable_bastion      = false
budget_alert_emails = ["ops@shop.example"]
