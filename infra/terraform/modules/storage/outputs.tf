output "assets_bucket" {
  value = aws_s3_bucket.assets.bucket
}

output "logs_bucket" {
  value = aws_s3_bucket.logs.bucket

  # The ALB may write its access logs only once the bucket policy lets it.
  depends_on = [aws_s3_bucket_policy.logs]
}

output "cdn_domain_name" {
  value = aws_cloudfront_distribution.assets.domain_name
}

output "cdn_hosted_zone_id" {
  value = aws_cloudfront_distribution.assets.hosted_zone_id
}

output "cdn_distribution_id" {
  value = aws_cloudfront_distribution.assets.id
}
