#!/usr/bin/env bash
# Install what the interop peers need (idempotent; exits non-zero on failure).
#
#   scripts/interop-setup.sh            # from anywhere; uses the repo's .venv when present
#
# - node oidc-provider 8.x: `npm ci` in tests/interop/oidc_provider (node_modules/ is
#   gitignored), exactly as pinned by package-lock.json; skipped when node_modules already
#   matches the lock file.
# - django-oauth-toolkit: comes from the venv (pyproject's dev group); this only checks that
#   it imports.
# Set PYTHON to choose the interpreter (default: .venv/bin/python, else python3).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
peer_dir="$repo/tests/interop/oidc_provider"

command -v node >/dev/null || { echo "interop-setup: node is not installed (need Node >= 18)" >&2; exit 1; }
command -v npm >/dev/null || { echo "interop-setup: npm is not installed" >&2; exit 1; }
echo "interop-setup: node $(node --version), npm $(npm --version)"

# npm ci writes node_modules/.package-lock.json; when it equals the lock file's packages the
# install is current and we skip the reinstall.
installed="$peer_dir/node_modules/.package-lock.json"
if [[ -f "$installed" ]] && node -e '
  const fs = require("fs");
  const [lock, have] = process.argv.slice(1).map((p) => JSON.parse(fs.readFileSync(p, "utf8")).packages);
  delete lock[""];
  process.exit(JSON.stringify(lock) === JSON.stringify(have) ? 0 : 1);
' "$peer_dir/package-lock.json" "$installed"; then
  echo "interop-setup: oidc-provider already installed in $peer_dir/node_modules"
else
  (cd "$peer_dir" && npm ci --no-audit --no-fund)
fi
(cd "$peer_dir" && node --input-type=module -e '
  import { createRequire } from "node:module";
  const { version } = createRequire(import.meta.url)("oidc-provider/package.json");
  if (!version.startsWith("8.")) { console.error(`oidc-provider ${version} is not 8.x`); process.exit(1); }
  await import("oidc-provider");
  console.log(`interop-setup: oidc-provider ${version} loads`);
')

python="${PYTHON:-}"
if [[ -z "$python" ]]; then
  if [[ -x "$repo/.venv/bin/python" ]]; then python="$repo/.venv/bin/python"; else python="python3"; fi
fi
"$python" - <<'PY'
from importlib.metadata import version

import django
import oauth2_provider  # noqa: F401

print(f"interop-setup: Django {django.get_version()}, django-oauth-toolkit {version('django-oauth-toolkit')}")
PY
