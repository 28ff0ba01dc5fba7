"""HTTP: the only package that imports starlette."""
