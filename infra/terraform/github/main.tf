# The repository's delivery settings as code (docs/delivery.md): branch protection of main with the pull request
# workflow's jobs as required checks, the environments staging and production (production with required
# reviewers, both deployable from main only), and the variables the workflows read. The repository itself is not
# managed here (it exists before CI does), nor are secret values: DAGSTER_API_TOKEN is set per environment with
# `gh secret set DAGSTER_API_TOKEN --env <name>` so it never lands in the Terraform state.

locals {
  # The job names of .github/workflows/pr.yml (tests/delivery checks they match).
  required_checks = ["lint", "test-fast", "frontend", "test"]
  environments    = ["staging", "production"]
  shared          = data.terraform_remote_state.shared.outputs
}

data "github_repository" "this" {
  full_name = "${var.github_owner}/${var.repository}"
}

data "github_user" "reviewer" {
  for_each = toset(var.production_reviewers)
  username = each.value
}

# The shared AWS root's outputs: the OIDC delivery role, the region, ECR.
data "terraform_remote_state" "shared" {
  backend = "s3"

  config = {
    bucket = "shop-ops-terraform-state"
    key    = "shared/terraform.tfstate"
    region = "eu-central-1"
  }
}

resource "github_branch_protection" "main" {
  #checkov:skip=CKV_GIT_5:One approval by someone other than the last pusher (require_last_push_approval) plus the required checks; a team of a few people cannot always find two reviewers: raise var.required_approvals when it grows
  repository_id = data.github_repository.this.node_id
  pattern       = "main"

  enforce_admins                  = true
  allows_force_pushes             = false
  allows_deletions                = false
  require_conversation_resolution = true
  required_linear_history         = true
  require_signed_commits          = true

  required_status_checks {
    strict   = true # the branch must be up to date with main: the checks ran on what will be merged
    contexts = local.required_checks
  }

  required_pull_request_reviews {
    required_approving_review_count = var.required_approvals
    dismiss_stale_reviews           = true
    require_last_push_approval      = true # the last push is approved by someone other than its author
  }
}

resource "github_repository_environment" "this" {
  for_each = toset(local.environments)

  repository          = data.github_repository.this.name
  environment         = each.value
  can_admins_bypass   = false
  prevent_self_review = each.value == "production"

  dynamic "reviewers" {
    for_each = each.value == "production" ? [1] : []
    content {
      users = [for login in var.production_reviewers : data.github_user.reviewer[login].id]
    }
  }

  deployment_branch_policy {
    protected_branches     = false
    custom_branch_policies = true
  }
}

resource "github_repository_environment_deployment_policy" "main" {
  for_each = github_repository_environment.this

  repository     = data.github_repository.this.name
  environment    = each.value.environment
  branch_pattern = "main"
}

# Repository variables: the GitHub-hosted push job has no environment (the OIDC role trusts refs/heads/main).
resource "github_actions_variable" "delivery" {
  for_each = {
    AWS_DELIVERY_ROLE_ARN = local.shared.github_delivery_role_arn
    AWS_REGION            = local.shared.region
    ECR_REGISTRY          = local.shared.ecr_registry
  }

  repository    = data.github_repository.this.name
  variable_name = each.key
  value         = each.value
}

# The Dagster URL per environment, read by the self-hosted jobs of that environment.
resource "github_actions_environment_variable" "dagster_url" {
  for_each = github_repository_environment.this

  repository    = data.github_repository.this.name
  environment   = each.value.environment
  variable_name = "DAGSTER_URL"
  value         = var.dagster_url
}
