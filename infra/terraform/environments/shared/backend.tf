# Remote state in the bootstrap's S3 bucket, locked with its DynamoDB table.
terraform {
  backend "s3" {
    bucket         = "shop-ops-terraform-state"
    key            = "shared/terraform.tfstate"
    region         = "eu-central-1"
    dynamodb_table = "shop-ops-terraform-lock"
    encrypt        = true
  }
}
