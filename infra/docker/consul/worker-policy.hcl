# A dialogue worker: registers, heartbeats and deregisters its own instances of the
# service "dialogue"; reads nodes (its agent's checks list). Nothing else.
service "dialogue" {
  policy = "write"
}
node_prefix "" {
  policy = "read"
}
