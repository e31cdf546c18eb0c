#!/usr/bin/env bash
# cfn-lint on every template: errors, warnings and informational findings all fail.
set -euo pipefail
cd "$(dirname "$0")/../.."
cfn-lint --format parseable deploy/cloudformation/*.yaml
echo "ok: cfn-lint clean on $(ls deploy/cloudformation/*.yaml | wc -l) templates"
