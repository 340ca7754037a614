"""The sans-I/O core: bytes and frames in, events and bytes out. No asyncio, no sockets,
no clock (time is passed in)."""
