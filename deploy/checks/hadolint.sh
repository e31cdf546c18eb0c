#!/usr/bin/env bash
# hadolint on the Dockerfile: any finding, down to "info", fails.
set -euo pipefail
cd "$(dirname "$0")/../.."
hadolint --failure-threshold info Dockerfile
echo "ok: hadolint clean on Dockerfile"
