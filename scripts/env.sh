# shellcheck shell=bash
# Sourced by every script: where the project-local tools live, and the variables that keep
# worker-build from downloading anything (wasm-bindgen and esbuild come from .tools and npm).
EP_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export EP_ROOT
export EP_TOOLS="$EP_ROOT/.tools"
export PATH="$EP_TOOLS/bin:$EP_ROOT/node_modules/.bin:$HOME/.cargo/bin:$PATH"
export WASM_BINDGEN_BIN="$EP_TOOLS/bin/wasm-bindgen"
export ESBUILD_BIN="$EP_ROOT/node_modules/@esbuild/linux-x64/bin/esbuild"
export WRANGLER_SEND_METRICS=false
# Playwright drives the system's Chromium; its own browser download is not reachable.
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1
export WRANGLER_LOG_PATH="$EP_ROOT/.wrangler/logs"
# The versions scripts/setup installs; wasm-bindgen must equal the one in Cargo.lock.
export EP_WORKER_BUILD_VERSION=0.8.7

ep_log() { printf '\033[1;34m==>\033[0m %s\n' "$*" >&2; }
ep_die() { printf '\033[1;31merror:\033[0m %s\n' "$*" >&2; exit 1; }

# The wasm-bindgen version Cargo.lock resolved, so the CLI always matches the library.
ep_wasm_bindgen_version() {
  awk '/^name = "wasm-bindgen"$/{getline; gsub(/version = |"/, ""); print; exit}' "$EP_ROOT/Cargo.lock"
}
