# Placeholders, like environments/shared's github_repository: the real owner, name and reviewers go here.
github_owner         = "example-org"
repository           = "shop-ops"
production_reviewers = ["release-manager-1", "release-manager-2"]
dagster_url          = "http://dagster.ops.internal:3000"
