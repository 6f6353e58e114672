"""Adapters to MySQL, Kafka, the password hash and the workers (through discovery/)."""
