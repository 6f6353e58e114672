"""Support files of docker-compose.yml: the MongoDB init job's script and .env creation."""
