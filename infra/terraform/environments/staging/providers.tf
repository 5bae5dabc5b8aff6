# Every resource gets the five tags: the four below from default_tags and from local.tags
# (passed to each module), Component from the module or resource itself.
provider "aws" {
  region = "eu-central-1"

  default_tags {
    tags = merge(local.tags, { Component = "platform" })
  }
}

# CloudFront's certificate must live in us-east-1.
provider "aws" {
  alias  = "us_east_1"
  region = "us-east-1"

  default_tags {
    tags = merge(local.tags, { Component = "platform" })
  }
}
