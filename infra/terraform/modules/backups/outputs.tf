output "bucket" {
  value = aws_s3_bucket.primary.bucket
}

output "bucket_arn" {
  value = aws_s3_bucket.primary.arn
}

output "copy_bucket" {
  value = aws_s3_bucket.copy.bucket
}

output "copy_bucket_arn" {
  value = aws_s3_bucket.copy.arn
}

output "dr_kms_key_arn" {
  value = aws_kms_key.dr.arn
}

output "restore_subnet_group" {
  value = aws_db_subnet_group.restore.name
}

output "restore_security_group_ids" {
  value = [aws_security_group.restore.id]
}
