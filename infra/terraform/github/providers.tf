# The token comes from GITHUB_TOKEN (a repository administrator's fine-grained token: Administration,
# Environments, Secrets and Variables: read and write on this repository), never from a file here.
provider "github" {
  owner = var.github_owner
}
