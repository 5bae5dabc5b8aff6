# Backups and disaster recovery: the backups bucket (config/aws.yaml aws.backups_bucket) with
# versioning, encryption, lifecycle to cheaper classes and replication of every object to
# the copy bucket in the DR region (aws.backups_copy_bucket, aws.dr_region); in the DR
# region also the KMS key RDS snapshot copies are encrypted with (aws.dr_kms_key_id) and a
# small network where restore tests start their temporary instances (aws.restore_subnet_group,
# aws.restore_security_groups).

data "aws_caller_identity" "current" {}

# --- primary bucket ----------------------------------------------------------------------------

resource "aws_s3_bucket" "primary" {
  #checkov:skip=CKV_AWS_18:no log bucket in the shared root (each environment's logs bucket is created after it); the dumps are AES-256-GCM encrypted by the pipeline before upload, so a read yields nothing without the pipeline's key
  #checkov:skip=CKV_AWS_145:the dumps are AES-256-GCM encrypted by the pipeline before upload; SSE-S3 encrypts them again at rest, and SSE-KMS would add KMS requests and KMS grants for replication without adding secrecy
  #checkov:skip=CKV2_AWS_62:nothing consumes events of this bucket: the pipeline writes and prunes it itself, and replication needs no notification
  bucket        = var.bucket_name
  force_destroy = false

  tags = merge(var.tags, { Component = "backups" })
}

resource "aws_s3_bucket_public_access_block" "primary" {
  bucket                  = aws_s3_bucket.primary.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_ownership_controls" "primary" {
  bucket = aws_s3_bucket.primary.id

  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_versioning" "primary" {
  bucket = aws_s3_bucket.primary.id

  versioning_configuration {
    status = "Enabled"
  }
}

# The dumps are already AES-256-GCM encrypted by the pipeline; the bucket encrypts again at rest.
resource "aws_s3_bucket_server_side_encryption_configuration" "primary" {
  bucket = aws_s3_bucket.primary.id

  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm = "AES256"
    }
    bucket_key_enabled = true
  }
}

# The pipeline prunes by its own retention (backups.retention_daily / _monthly); here only the
# storage class moves with age and deleted objects' old versions go.
resource "aws_s3_bucket_lifecycle_configuration" "primary" {
  bucket = aws_s3_bucket.primary.id

  rule {
    id     = "cheaper-with-age"
    status = "Enabled"

    filter {}

    transition {
      days          = 30
      storage_class = "STANDARD_IA"
    }

    transition {
      days          = 90
      storage_class = "GLACIER"
    }

    noncurrent_version_expiration {
      noncurrent_days = var.noncurrent_days
    }

    abort_incomplete_multipart_upload {
      days_after_initiation = 7
    }
  }
}

data "aws_iam_policy_document" "tls_only_primary" {
  statement {
    sid       = "TlsOnly"
    effect    = "Deny"
    actions   = ["s3:*"]
    resources = [aws_s3_bucket.primary.arn, "${aws_s3_bucket.primary.arn}/*"]
    principals {
      type        = "*"
      identifiers = ["*"]
    }
    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

resource "aws_s3_bucket_policy" "primary" {
  bucket = aws_s3_bucket.primary.id
  policy = data.aws_iam_policy_document.tls_only_primary.json
}

# --- copy bucket in the DR region ----------------------------------------------------------------

resource "aws_s3_bucket" "copy" {
  #checkov:skip=CKV_AWS_18:written only by S3 replication from the backups bucket; no log bucket in the DR region, and the objects are dumps encrypted by the pipeline (AES-256-GCM) before upload
  #checkov:skip=CKV_AWS_144:this bucket is itself the cross-region replica of the backups bucket
  #checkov:skip=CKV_AWS_145:the replicated dumps are AES-256-GCM encrypted by the pipeline; SSE-S3 encrypts them again at rest, and SSE-KMS would add KMS requests without adding secrecy
  #checkov:skip=CKV2_AWS_62:nothing consumes events of the DR copy; it is read only in a recovery
  provider = aws.dr

  bucket        = var.copy_bucket_name
  force_destroy = false

  tags = merge(var.tags, { Component = "backups" })
}

resource "aws_s3_bucket_public_access_block" "copy" {
  provider = aws.dr

  bucket                  = aws_s3_bucket.copy.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_ownership_controls" "copy" {
  provider = aws.dr

  bucket = aws_s3_bucket.copy.id

  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_versioning" "copy" {
  provider = aws.dr

  bucket = aws_s3_bucket.copy.id

  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "copy" {
  provider = aws.dr

  bucket = aws_s3_bucket.copy.id

  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm = "AES256"
    }
    bucket_key_enabled = true
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "copy" {
  provider = aws.dr

  bucket = aws_s3_bucket.copy.id

  rule {
    id     = "cold-copy"
    status = "Enabled"

    filter {}

    transition {
      days          = 30
      storage_class = "GLACIER"
    }

    noncurrent_version_expiration {
      noncurrent_days = var.noncurrent_days
    }

    abort_incomplete_multipart_upload {
      days_after_initiation = 7
    }
  }
}

# --- replication ---------------------------------------------------------------------------------

data "aws_iam_policy_document" "replication_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["s3.amazonaws.com"]
    }
  }
}

data "aws_iam_policy_document" "replication" {
  statement {
    actions   = ["s3:GetReplicationConfiguration", "s3:ListBucket"]
    resources = [aws_s3_bucket.primary.arn]
  }

  statement {
    actions = [
      "s3:GetObjectVersionForReplication",
      "s3:GetObjectVersionAcl",
      "s3:GetObjectVersionTagging",
    ]
    resources = ["${aws_s3_bucket.primary.arn}/*"]
  }

  statement {
    actions   = ["s3:ReplicateObject", "s3:ReplicateDelete", "s3:ReplicateTags"]
    resources = ["${aws_s3_bucket.copy.arn}/*"]
  }
}

resource "aws_iam_role" "replication" {
  name               = "${var.bucket_name}-replication"
  assume_role_policy = data.aws_iam_policy_document.replication_assume.json

  tags = merge(var.tags, { Component = "backups" })
}

resource "aws_iam_role_policy" "replication" {
  name   = "replicate-backups"
  role   = aws_iam_role.replication.id
  policy = data.aws_iam_policy_document.replication.json
}

resource "aws_s3_bucket_replication_configuration" "primary" {
  bucket = aws_s3_bucket.primary.id
  role   = aws_iam_role.replication.arn

  rule {
    id     = "everything-to-dr"
    status = "Enabled"

    filter {}

    delete_marker_replication {
      status = "Enabled"
    }

    destination {
      bucket        = aws_s3_bucket.copy.arn
      storage_class = "STANDARD_IA"

      replication_time {
        status = "Enabled"
        time {
          minutes = 15
        }
      }

      metrics {
        status = "Enabled"
        event_threshold {
          minutes = 15
        }
      }
    }
  }

  depends_on = [aws_s3_bucket_versioning.primary, aws_s3_bucket_versioning.copy]
}

# --- DR region: KMS key for snapshot copies, restore network ----------------------------------------

# A key policy: Resource "*" means this key, and the account root holding kms:* is the default
# key policy that lets IAM policies (modules/iam: the run role) grant use of the key.
data "aws_iam_policy_document" "dr_key" {
  #checkov:skip=CKV_AWS_111:a KMS key policy, where Resource "*" is the key itself; the statement is AWS's default key policy (account root), which delegates access to IAM policies
  #checkov:skip=CKV_AWS_356:a KMS key policy, where Resource "*" is the key itself (AWS requires "*" in key policies)
  #checkov:skip=CKV_AWS_109:a KMS key policy, where Resource "*" is the key itself; the statement is AWS's default key policy (account root), without which the key could become unmanageable
  statement {
    sid       = "AccountAdmin"
    actions   = ["kms:*"]
    resources = ["*"]
    principals {
      type        = "AWS"
      identifiers = ["arn:aws:iam::${data.aws_caller_identity.current.account_id}:root"]
    }
  }
}

resource "aws_kms_key" "dr" {
  provider = aws.dr

  description             = "RDS snapshot copies and restore-test instances in the DR region"
  enable_key_rotation     = true
  deletion_window_in_days = 30
  policy                  = data.aws_iam_policy_document.dr_key.json

  tags = merge(var.tags, { Component = "backups" })
}

resource "aws_kms_alias" "dr" {
  provider = aws.dr

  name          = "alias/${var.bucket_name}-dr"
  target_key_id = aws_kms_key.dr.key_id
}

data "aws_region" "dr" {
  provider = aws.dr
}

# Pinned by name, so a zone AWS adds (or one whose state changes) does not move the subnets.
data "aws_availability_zones" "dr" {
  provider = aws.dr

  filter {
    name   = "zone-name"
    values = ["${data.aws_region.dr.name}a", "${data.aws_region.dr.name}b"]
  }
}

resource "aws_vpc" "restore" {
  #checkov:skip=CKV2_AWS_11:nothing can reach this VPC yet (no internet or NAT gateway, and the peering from the pipeline's network is not built, see README); add flow logs together with that peering
  provider = aws.dr

  cidr_block           = var.restore_cidr_block
  enable_dns_support   = true
  enable_dns_hostnames = true

  tags = merge(var.tags, { Component = "backups", Name = "${var.bucket_name}-restore" })
}

resource "aws_default_security_group" "restore" {
  provider = aws.dr

  vpc_id = aws_vpc.restore.id

  tags = merge(var.tags, { Component = "backups", Name = "${var.bucket_name}-restore-default-closed" })
}

resource "aws_subnet" "restore" {
  provider = aws.dr
  count    = 2

  vpc_id            = aws_vpc.restore.id
  availability_zone = data.aws_availability_zones.dr.names[count.index]
  cidr_block        = cidrsubnet(var.restore_cidr_block, 4, count.index)

  tags = merge(var.tags, { Component = "backups", Name = "${var.bucket_name}-restore-${count.index}" })
}

resource "aws_db_subnet_group" "restore" {
  provider = aws.dr

  name       = "${var.bucket_name}-restore"
  subnet_ids = aws_subnet.restore[*].id

  tags = merge(var.tags, { Component = "backups" })
}

# Restored instances admit PostgreSQL only from the networks the restore checks run in.
resource "aws_security_group" "restore" {
  #checkov:skip=CKV2_AWS_5:attached at run time: the pipeline starts its restore-test instances in this group (output restore_security_group_ids, config/aws.yaml aws.restore_security_groups)
  provider = aws.dr

  name        = "${var.bucket_name}-restore"
  description = "Restore-test instances: PostgreSQL from the pipeline's run tasks only"
  vpc_id      = aws_vpc.restore.id

  tags = merge(var.tags, { Component = "backups", Name = "${var.bucket_name}-restore" })
}

resource "aws_vpc_security_group_ingress_rule" "restore" {
  provider = aws.dr
  for_each = toset(var.restore_client_cidrs)

  security_group_id = aws_security_group.restore.id
  description       = "PostgreSQL from the pipeline's run tasks"
  ip_protocol       = "tcp"
  from_port         = 5432
  to_port           = 5432
  cidr_ipv4         = each.value

  tags = merge(var.tags, { Component = "backups" })
}
