#!/usr/bin/env bash
# Builds the console's front-end assets from npm packages (make console-assets):
# installs the exact versions of package-lock.json and copies what the
# console serves into internal/web/static (committed, so the Go build and
# make test work offline) and axe-core into the browser tests' testdata.
set -euo pipefail
cd "$(dirname "$0")"
npm ci --no-audit --no-fund
nhs=node_modules/nhsuk-frontend/dist/nhsuk
static=../internal/web/static
rm -rf "$static/vendor" "$static/assets"
mkdir -p "$static/vendor" "$static/assets"
cp "$nhs/nhsuk-frontend.min.css" "$nhs/nhsuk-frontend.min.js" "$static/vendor/"
cp -r "$nhs/assets/images" "$nhs/assets/manifest.json" "$static/assets/"
cp node_modules/chart.js/dist/chart.umd.min.js "$static/vendor/"
cp node_modules/axe-core/axe.min.js ../testdata/axe.min.js
# Record the versions served (the page footer and the tests read nothing
# else from npm).
node -e 'for (const p of ["nhsuk-frontend","chart.js","axe-core"]) console.log(p+"@"+require("./node_modules/"+p+"/package.json").version)' >"$static/vendor/VERSIONS"
