"""How work comes in: the faust agent and the internal HTTP API."""
