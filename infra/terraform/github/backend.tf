# The same locked state bucket as the AWS roots (bootstrap/ creates it), a key of its own.
terraform {
  backend "s3" {
    bucket         = "shop-ops-terraform-state"
    key            = "github/terraform.tfstate"
    region         = "eu-central-1"
    dynamodb_table = "shop-ops-terraform-lock"
    encrypt        = true
  }
}
