"""The Legato server: the API, its services and (later) the UI."""
