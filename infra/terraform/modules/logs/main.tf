# CloudWatch log groups with retention (every group a service writes to is created here, so
# none is left to be auto-created without retention).

resource "aws_cloudwatch_log_group" "this" {
  for_each = var.log_groups

  name              = each.key
  retention_in_days = each.value
  kms_key_id        = var.kms_key_arn

  tags = merge(var.tags, { Component = "logs" })
}
