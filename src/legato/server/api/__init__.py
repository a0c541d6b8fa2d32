"""The REST API's routes: thin adapters from HTTP to the orchestration core and the store."""
