# CloudWatch log groups with retention (every group a service writes to is created here, so
# none is left to be auto-created without retention).

resource "aws_cloudwatch_log_group" "this" {
  #checkov:skip=CKV_AWS_338:retention is chosen per group by the caller on purpose (30 to 90 days): these are operational logs of the app and the Dagster runs, read within days; a year of CloudWatch storage would cost more than it helps
  for_each = var.log_groups

  name              = each.key
  retention_in_days = each.value
  kms_key_id        = var.kms_key_arn

  tags = merge(var.tags, { Component = "logs" })
}
