"""Adapters to the outside world: MongoDB, Kafka (topics, dead letters), Consul."""
