# Bootstrap, applied once with local state: the S3 bucket that holds every root's remote
# state (versioned, encrypted, private) and the DynamoDB table that locks it.

terraform {
  required_version = ">= 1.6"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 5.80"
    }
  }
}

provider "aws" {
  region = var.region

  default_tags {
    tags = merge(local.tags, { Component = "terraform-state" })
  }
}

locals {
  tags = {
    Project     = "shop"
    Environment = "shared"
    Owner       = var.owner
    CostCenter  = var.cost_center
  }
}

resource "aws_s3_bucket" "state" {
  #checkov:skip=CKV_AWS_18:bootstrap is applied first and on its own, before any bucket exists that could receive S3 access logs
  #checkov:skip=CKV_AWS_144:no second-region copy of the state: versioning recovers the revisions of the last 90 days, and the infrastructure it describes lives in this region (a lost state can be rebuilt with terraform import)
  #checkov:skip=CKV2_AWS_62:nothing consumes events of the state bucket; Terraform reads and writes it directly
  bucket = var.state_bucket

  lifecycle {
    prevent_destroy = true
  }

  tags = merge(local.tags, { Component = "terraform-state" })
}

resource "aws_s3_bucket_versioning" "state" {
  bucket = aws_s3_bucket.state.id

  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "state" {
  bucket = aws_s3_bucket.state.id

  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm = "aws:kms"
    }
    bucket_key_enabled = true
  }
}

resource "aws_s3_bucket_public_access_block" "state" {
  bucket                  = aws_s3_bucket.state.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

# Every apply writes a new state version: old versions are kept 90 days (long enough to roll a
# bad apply back), unfinished uploads are dropped after a week.
resource "aws_s3_bucket_lifecycle_configuration" "state" {
  bucket = aws_s3_bucket.state.id

  rule {
    id     = "old-state-versions"
    status = "Enabled"

    filter {}

    noncurrent_version_expiration {
      noncurrent_days = 90
    }

    abort_incomplete_multipart_upload {
      days_after_initiation = 7
    }
  }

  depends_on = [aws_s3_bucket_versioning.state]
}

resource "aws_s3_bucket_ownership_controls" "state" {
  bucket = aws_s3_bucket.state.id

  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_dynamodb_table" "lock" {
  #checkov:skip=CKV_AWS_119:the table holds only lock IDs and state checksums, no secrets; it is encrypted at rest with the AWS managed key aws/dynamodb and has point-in-time recovery; a customer managed key would cost $1/month for nothing to protect
  name         = var.lock_table
  billing_mode = "PAY_PER_REQUEST"
  hash_key     = "LockID"

  attribute {
    name = "LockID"
    type = "S"
  }

  point_in_time_recovery {
    enabled = true
  }

  server_side_encryption {
    enabled = true
  }

  tags = merge(local.tags, { Component = "terraform-state" })
}
