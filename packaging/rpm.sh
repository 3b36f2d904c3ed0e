#!/usr/bin/env bash
# Builds target/generate-rpm/saltship-<version>-1.<arch>.rpm: the release binary, the man
# pages gzipped (as the .deb has them; cargo-generate-rpm does not compress), and what
# [package.metadata.generate-rpm] in Cargo.toml lists. Needs `cargo install cargo-generate-rpm`.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release
rm -rf target/man && mkdir -p target/man
for page in man/*.1; do
    gzip -9 -n -c "$page" > "target/man/$(basename "$page").gz"
done
cargo generate-rpm "$@"
ls target/generate-rpm/*.rpm
