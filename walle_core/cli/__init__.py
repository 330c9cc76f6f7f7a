"""The ``walle`` command line (typer). Each area owns one module with a ``register(app)``."""
