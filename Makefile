# The two commands: `make run` (the local environment) and `make test` (the whole suite).
SHELL := /bin/bash
VENV := .venv/bin

.PHONY: test install lint frontend images bench-api

install:
	scripts/install.sh

lint: install
	$(VENV)/ruff check .
	$(VENV)/ruff format --check .

frontend: install
	cd frontend && npm run build && npm test

images: install
	scripts/build-images.sh

# Installs what is missing, builds the storefront, then runs every test against real services.
test: install lint frontend
	$(VENV)/pytest

bench-api: install
	$(VENV)/python bench/shop_api.py
