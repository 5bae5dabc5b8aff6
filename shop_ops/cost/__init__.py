"""What the shop's AWS infrastructure costs, without Dagster: its HCL read as data, priced per month.

Modules: `hcl` (a Terraform root and its local modules as resources with evaluated attributes;
the parsing helpers the static checks use too), `estimate` (monthly USD per resource from the
committed price table `infra/pricing/` and the usage file `infra/terraform/usage.yaml`).
"""
