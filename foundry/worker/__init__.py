"""Background loops, each `*_once() -> int`, and the runner that drives them."""
