# The Consul agent's own token: keeps its node's catalog entry in sync.
node_prefix "" {
  policy = "write"
}
service_prefix "" {
  policy = "read"
}
