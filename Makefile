# The two commands: `make run` (the local environment) and `make test` (the whole suite).
SHELL := /bin/bash
VENV := .venv/bin

.PHONY: run test test-fast install lint frontend images bench-api bench-tls api-changelog
.PHONY: install-venv install-npm lint-workflows push-build check-pushed-build promote-production

# Installs what is missing, starts the local environment (`shop-ops local up`: databases, Redis,
# registry, Docker API, routers, the shop in staging and production, dagster dev) and prints
# the URLs. Idempotent: what already runs is reused. Stop it with `.venv/bin/shop-ops local down`.
run: install
	$(VENV)/shop-ops local up

install:
	scripts/install.sh

# Parts of install for the checks that need only them (CI's GitHub-hosted jobs have no root for the Debian packages).
install-venv:
	scripts/install.sh venv

install-npm:
	scripts/install.sh npm

lint: install-venv lint-workflows
	$(VENV)/ruff check .
	$(VENV)/ruff format --check .
	$(VENV)/lint-imports

# The GitHub Actions workflows: actionlint (.github/actionlint.yaml) and zizmor's security audits, offline.
lint-workflows: install-venv
	$(VENV)/actionlint
	$(VENV)/zizmor --offline --no-progress .github/workflows

frontend: install-npm
	cd frontend && npm run build && npm test

images: install
	scripts/build-images.sh

# Installs what is missing, builds the storefront, then runs every test against real services.
test: install lint frontend
	$(VENV)/pytest

# The tests that start no outside program (no PostgreSQL, Redis, registry, podman, nginx, Chromium,
# moto, dagster): under a minute, for the edit-test loop. `make test` stays the whole suite.
test-fast: install-venv
	$(VENV)/pytest -m "not services"

bench-api: install
	$(VENV)/python bench/shop_api.py

# What HTTPS costs at a router: plain vs HTTPS, connections kept and new (bench/README.md).
bench-tls: install
	$(VENV)/python bench/tls.py

# The API changelog entry of this build (api_docs wrote it under .state/api-docs/<version>-<sha>/) prepended
# to docs/api/CHANGELOG.md, to commit with the release (an entry of the same version is replaced).
api-changelog: install
	$(VENV)/python -m shop_ops.release.api_docs changelog ".state/api-docs/$$(cat VERSION)-$$(git rev-parse --short HEAD)/changelog.md"

# Delivery (docs/delivery.md): what the main and production workflows run, as a person runs it.
# Build both images and push them as <version>-<sha> to PUSH_REGISTRY (no release tag: the pipeline adds it).
push-build: install-venv
	scripts/push-build.sh

# Job check_pushed_build on the pushed BUILD_TAG, followed to its end (SHOP_OPS_DAGSTER_URL): release tag if it passes.
check-pushed-build: install-venv
	scripts/check-pushed-build.sh

# Job promote_production for RELEASE_VERSION (verified on staging), approved_by = the approver, followed to its end.
promote-production: install-venv
	scripts/promote-production.sh
