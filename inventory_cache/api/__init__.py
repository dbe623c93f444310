"""The HTTP API: `main.create_app` builds it; routes by area live in `routes/`."""
