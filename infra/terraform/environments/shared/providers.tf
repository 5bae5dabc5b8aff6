# Every resource gets the five tags: the four below from default_tags and from local.tags
# (passed to each module), Component from the module or resource itself.
provider "aws" {
  region = local.region

  default_tags {
    tags = merge(local.tags, { Component = "platform" })
  }
}

# The disaster-recovery region: the backups' copy bucket, the snapshot-copy key, the restore network.
provider "aws" {
  alias  = "dr"
  region = local.dr_region

  default_tags {
    tags = merge(local.tags, { Component = "platform" })
  }
}
