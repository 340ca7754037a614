"""Transport adapters: the only code that touches sockets."""
