# The gateway: follows the passing instances of "dialogue" (the health endpoint filters
# by service and node read rights). Nothing else; it can register nothing.
service "dialogue" {
  policy = "read"
}
node_prefix "" {
  policy = "read"
}
