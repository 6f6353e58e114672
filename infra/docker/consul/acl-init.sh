#!/bin/sh
# One-shot (docker-compose.yml, consul-acl-init): with the management token, create the
# policies of infra/docker/consul/*.hcl and one token per role with the SecretIDs from
# .env, then hand the agent its token. Safe to run again: what exists is left as it is.
set -eu

: "${CONSUL_HTTP_TOKEN:?the management token}"
: "${CONSUL_AGENT_TOKEN:?}" "${CONSUL_WORKER_TOKEN:?}" "${CONSUL_GATEWAY_TOKEN:?}"
POLICIES=/consul/policies

policy() {  # name file
  if ! consul acl policy read -name "$1" >/dev/null 2>&1; then
    consul acl policy create -name "$1" -rules "@$POLICIES/$2" >/dev/null
    echo "policy $1 created"
  fi
}

token() {  # secret policy description
  if ! CONSUL_HTTP_TOKEN="$1" consul acl token read -self >/dev/null 2>&1; then
    consul acl token create -secret "$1" -policy-name "$2" -description "$3" >/dev/null
    echo "token for $2 created"
  fi
}

policy consul-agent agent-policy.hcl
policy dialogue-worker worker-policy.hcl
policy dialogue-gateway gateway-policy.hcl
token "$CONSUL_AGENT_TOKEN" consul-agent "the Consul agent"
token "$CONSUL_WORKER_TOKEN" dialogue-worker "dialogue workers (service:write on dialogue)"
token "$CONSUL_GATEWAY_TOKEN" dialogue-gateway "the gateway (service:read on dialogue)"
consul acl set-agent-token agent "$CONSUL_AGENT_TOKEN" >/dev/null
echo "consul ACLs ready"
