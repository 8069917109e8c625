# shellcheck shell=bash
# Starting and stopping the local stack (both workers in one `wrangler dev`), shared by
# scripts/dev, scripts/test and scripts/bench. Sourced after env.sh.

# One root secret per checkout, generated on first use and kept in the git-ignored .edgeplane/.
# The review worker reads its copy from workers/review/.dev.vars (wrangler loads a secondary
# worker's vars only from its own directory); the gateway gets it through a per-run env file.
ep_local_secrets() {
  mkdir -p "$EP_ROOT/.edgeplane"
  local f="$EP_ROOT/.edgeplane/root_secret"
  if [ ! -s "$f" ]; then
    python3 -c 'import secrets; print(secrets.token_hex(32))' > "$f"
    chmod 600 "$f"
  fi
  EP_ROOT_SECRET="$(cat "$f")"
  # The review worker's own secret (opens BYOK provider keys); the gateway gets only its public
  # key (scripts/review-public-key), so it can seal provider keys but never open them.
  local rf="$EP_ROOT/.edgeplane/review_secret"
  if [ ! -s "$rf" ]; then
    python3 -c 'import secrets; print(secrets.token_hex(32))' > "$rf"
    chmod 600 "$rf"
  fi
  EP_REVIEW_SECRET="$(cat "$rf")"
  EP_REVIEW_PUBLIC_KEY="$(node "$EP_ROOT/scripts/review-public-key" < "$rf")"
  local review_vars="$EP_ROOT/workers/review/.dev.vars"
  local want
  want=$(printf '%s\n' \
    "# Written by scripts (stack.sh); local development only." \
    "ROOT_SECRET=$EP_ROOT_SECRET" \
    "REVIEW_SECRET=$EP_REVIEW_SECRET" \
    "QUEUE_RETRY_BASE_SECONDS=1" \
    "ALLOW_LOOPBACK_EGRESS=true")
  if [ ! -f "$review_vars" ] || [ "$(cat "$review_vars")" != "$want" ]; then
    printf '%s\n' "$want" > "$review_vars"
    chmod 600 "$review_vars"
  fi
}

# ep_stack_env_file STATE_DIR PORT SETUP_TOKEN [KEY=VALUE ...]: the gateway's secrets and vars.
ep_stack_env_file() {
  local state="$1" port="$2" token="$3"; shift 3
  {
    echo "ROOT_SECRET=$EP_ROOT_SECRET"
    echo "SETUP_TOKEN=$token"
    echo "PUBLIC_BASE_URL=http://127.0.0.1:$port"
    echo "ALLOW_LOOPBACK_EGRESS=true"
    echo "REVIEW_BYOK_PUBLIC_KEY=$EP_REVIEW_PUBLIC_KEY"
    for kv in "$@"; do echo "$kv"; done
  } > "$state/gateway.env"
  chmod 600 "$state/gateway.env"
}

ep_apply_migrations() {
  local state="$1"
  (cd "$EP_ROOT" && wrangler d1 migrations apply DB --local --persist-to "$state" >"$state/migrations.log" 2>&1) \
    || { cat "$state/migrations.log" >&2; ep_die "applying D1 migrations failed"; }
}

# ep_prebuilt_configs: copies of both wrangler configs without their [build] table, written next
# to the originals so their relative paths hold (git-ignored). A stack started from them serves
# the workers exactly as built and never rebuilds them. With the [build] table, wrangler's
# watcher fires once more after start-up ("... changed, restarting build"), and the reload that
# follows can land seconds later, mid-test, when the machine is busy: the request in flight then
# gets 503 "Your worker restarted mid-request". The tests and their restarts use these copies;
# scripts/dev keeps rebuilding on change.
ep_prebuilt_configs() {
  local cfg
  for cfg in "$EP_ROOT/wrangler.toml" "$EP_ROOT/workers/review/wrangler.toml"; do
    awk '/^\[build\]/ { skip = 1; next } /^\[/ { skip = 0 } !skip' "$cfg" >"${cfg%.toml}.prebuilt.toml"
  done
}

# ep_stack_start STATE_DIR PORT LOGFILE|-  : starts wrangler dev in its own process group.
# With EP_STACK_PREBUILT set, it serves the workers as built (see ep_prebuilt_configs).
# Sets EP_STACK_PID. With LOGFILE "-" output goes to this terminal; a log file is appended to
# (a restarted stack keeps one log).
ep_stack_start() {
  local state="$1" port="$2" log="$3"
  local gateway_cfg=wrangler.toml review_cfg=workers/review/wrangler.toml
  if [ -n "${EP_STACK_PREBUILT:-}" ]; then
    ep_prebuilt_configs
    gateway_cfg=wrangler.prebuilt.toml review_cfg=workers/review/wrangler.prebuilt.toml
  fi
  local args=(dev -c "$gateway_cfg" -c "$review_cfg"
    --ip 127.0.0.1 --port "$port" --persist-to "$state" --env-file "$state/gateway.env"
    --test-scheduled --show-interactive-dev-session=false)
  cd "$EP_ROOT"
  if [ "$log" = "-" ]; then
    setsid wrangler "${args[@]}" &
  else
    setsid wrangler "${args[@]}" >>"$log" 2>&1 &
  fi
  EP_STACK_PID=$!
}

ep_stack_stop() {
  if [ -n "${EP_STACK_PID:-}" ] && kill -0 "$EP_STACK_PID" 2>/dev/null; then
    kill -TERM -- "-$EP_STACK_PID" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$EP_STACK_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL -- "-$EP_STACK_PID" 2>/dev/null || true
  fi
  EP_STACK_PID=
}

# ep_wait_ready URL TIMEOUT_SECONDS: waits for /healthz to answer 200.
ep_wait_ready() {
  local url="$1" timeout="$2" i
  for ((i = 0; i < timeout * 2; i++)); do
    if [ -n "${EP_STACK_PID:-}" ] && ! kill -0 "$EP_STACK_PID" 2>/dev/null; then
      return 1
    fi
    curl -sf -o /dev/null "$url/healthz" && return 0
    sleep 0.5
  done
  return 1
}

ep_free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# ep_stack_restart STATE_DIR PORT LOGFILE PIDFILE: stops the stack whose process-group id is in
# PIDFILE and starts the same stack again (same port, same persisted state, same env file),
# waits until it is ready, and writes the new id to PIDFILE. Tests that prove state survives a
# restart get this as a command (EP_STACK_RESTART, see scripts/test).
ep_stack_restart() {
  local state="$1" port="$2" log="$3" pidfile="$4"
  EP_STACK_PID="$(cat "$pidfile")"
  ep_stack_stop
  echo "---- stack restarted ----" >>"$log"
  ep_stack_start "$state" "$port" "$log"
  echo "$EP_STACK_PID" >"$pidfile"
  ep_wait_ready "http://127.0.0.1:$port" 300 || ep_die "the restarted stack did not become ready"
}

# ep_identity_fakes_start RUN_DIR GATEWAY_BASE_URL: starts the loopback fakes sign-in needs before
# the stack — the Resend-compatible email fake (tests/src/bin/fake_email.rs) and a real OpenID
# Provider (`oidc-provider`, tests/oidc/provider.mjs) whose client redirects to the gateway —
# and sets EP_IDENTITY_VARS (gateway vars pointing at them), EP_EMAIL_FAKE and EP_OIDC_ISSUER.
ep_identity_fakes_start() {
  local dir="$1" base="$2" key secret
  (cd "$EP_ROOT" && cargo build -q -p e2e --bin fake_email) || ep_die "building the email fake failed"
  key="re_test_$(python3 -c 'import secrets; print(secrets.token_hex(16))')"
  secret="$(python3 -c 'import secrets; print(secrets.token_hex(24))')"
  setsid "$EP_ROOT/target/debug/fake_email" --port 0 --api-key "$key" >"$dir/fake_email.out" 2>"$dir/fake_email.log" &
  EP_EMAIL_FAKE_PID=$!
  setsid node "$EP_ROOT/tests/oidc/provider.mjs" --client-id edgeplane-e2e --client-secret "$secret" \
    --redirect-uri "$base/v1/auth/providers/test/callback" >"$dir/oidc.out" 2>"$dir/oidc.log" &
  EP_OIDC_PID=$!
  EP_EMAIL_FAKE="$(ep_wait_line "$dir/fake_email.out" "$EP_EMAIL_FAKE_PID")" || ep_die "the email fake did not start"
  EP_OIDC_ISSUER="$(ep_wait_line "$dir/oidc.out" "$EP_OIDC_PID")" || { cat "$dir/oidc.log" >&2; ep_die "the OIDC provider did not start"; }
  export EP_EMAIL_FAKE EP_OIDC_ISSUER
  EP_IDENTITY_VARS=(
    "EMAIL_PROVIDER=resend" "EMAIL_API_BASE=$EP_EMAIL_FAKE" "EMAIL_API_KEY=$key"
    "EMAIL_FROM=edgeplane <no-reply@edgeplane.test>"
    "SIGNIN_PROVIDERS=test" "SIGNIN_TEST_PRESET=generic" "SIGNIN_TEST_ISSUER=$EP_OIDC_ISSUER"
    "SIGNIN_TEST_CLIENT_ID=edgeplane-e2e" "SIGNIN_TEST_CLIENT_SECRET=$secret"
    "SIGNIN_TEST_DISPLAY_NAME=Test OIDC provider"
  )
}

ep_identity_fakes_stop() {
  local pid
  for pid in "${EP_EMAIL_FAKE_PID:-}" "${EP_OIDC_PID:-}"; do
    [ -n "$pid" ] && kill -TERM -- "-$pid" 2>/dev/null || true
  done
  EP_EMAIL_FAKE_PID= EP_OIDC_PID=
}

# ep_wait_line FILE PID: prints the URL from a `listening on URL` line once FILE has one.
ep_wait_line() {
  local file="$1" pid="$2" i line
  for ((i = 0; i < 200; i++)); do
    line="$(grep -m1 '^listening on ' "$file" 2>/dev/null || true)"
    if [ -n "$line" ]; then echo "${line#listening on }"; return 0; fi
    kill -0 "$pid" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}

# As a command: `bash scripts/stack.sh restart STATE_DIR PORT LOGFILE PIDFILE`.
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  source "$(dirname "$0")/env.sh"
  case "${1:-}" in
    restart) shift; ep_stack_restart "$@" ;;
    *) echo "usage: $0 restart STATE_DIR PORT LOGFILE PIDFILE" >&2; exit 2 ;;
  esac
fi
