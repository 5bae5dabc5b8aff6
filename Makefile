# The two commands: `make run` (the local environment) and `make test` (the whole suite).
SHELL := /bin/bash
VENV := .venv/bin

.PHONY: run test test-fast install lint frontend images bench-api bench-tls

# Installs what is missing, starts the local environment (`shop-ops local up`: databases, Redis,
# registry, Docker API, routers, the shop in staging and production, dagster dev) and prints
# the URLs. Idempotent: what already runs is reused. Stop it with `.venv/bin/shop-ops local down`.
run: install
	$(VENV)/shop-ops local up

install:
	scripts/install.sh

lint: install
	$(VENV)/ruff check .
	$(VENV)/ruff format --check .
	$(VENV)/lint-imports

frontend: install
	cd frontend && npm run build && npm test

images: install
	scripts/build-images.sh

# Installs what is missing, builds the storefront, then runs every test against real services.
test: install lint frontend
	$(VENV)/pytest

# The tests that start no outside program (no PostgreSQL, Redis, registry, podman, nginx, Chromium,
# moto, dagster): under a minute, for the edit-test loop. `make test` stays the whole suite.
test-fast: install
	$(VENV)/pytest -m "not services"

bench-api: install
	$(VENV)/python bench/shop_api.py

# What HTTPS costs at a router: plain vs HTTPS, connections kept and new (bench/README.md).
bench-tls: install
	$(VENV)/python bench/tls.py
