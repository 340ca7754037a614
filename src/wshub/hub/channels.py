"""Channel names and namespaces: ``namespace:name``, user-limited ``name#user1,user2``."""

from __future__ import annotations

from wshub.config import Config, NamespaceConfig

NAMESPACE_BOUNDARY = ":"
USER_BOUNDARY = "#"
USER_SEPARATOR = ","


class Channels:
    """Resolves a channel name to its namespace options."""

    def __init__(self, config: Config) -> None:
        self.max_length = config.client.channel_max_length
        self.namespaces: dict[str, NamespaceConfig] = {ns.name: ns for ns in config.namespaces}
        if "" not in self.namespaces:
            self.namespaces[""] = NamespaceConfig(name="")

    def namespace_name(self, channel: str) -> str:
        ns, sep, _ = channel.partition(NAMESPACE_BOUNDARY)
        return ns if sep else ""

    def options(self, channel: str) -> NamespaceConfig | None:
        """The channel's namespace options, or None when the namespace is unknown."""
        return self.namespaces.get(self.namespace_name(channel))

    def valid(self, channel: str) -> bool:
        """Non-empty, within the length limit, no whitespace or control characters."""
        if not channel or len(channel) > self.max_length:
            return False
        return channel.isprintable() and " " not in channel


def allowed_users(channel: str) -> list[str] | None:
    """The users a user-limited channel admits, or None when the channel is not limited."""
    _, sep, users = channel.rpartition(USER_BOUNDARY)
    if not sep:
        return None
    return [u for u in users.split(USER_SEPARATOR) if u]
