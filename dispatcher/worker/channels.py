"""The providers a dispatcher sends through: the default one of each kind, from its environment, and the
channels of monitoring_providers, each with its secrets read from that environment by reference."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from dispatcher import logs
from dispatcher.providers import Channel, all_secrets, channel_provider
from dispatcher.providers.base import Provider, Unconfigured


class ChannelBook:
    """Which provider sends for each channel name, and of which kind each channel is. Replaced whole on a
    change, so a reader on another thread never sees it half-built."""

    def __init__(self, defaults: Mapping[str, Provider], env: Mapping[str, str]):
        self._defaults = dict(defaults)
        self._env = env
        self._rows: tuple = ()
        self.providers: dict[str, Provider] = dict(defaults)
        self.kinds: dict[str, str] = {name: name for name in defaults}

    def load(self, rows: Iterable[tuple]) -> tuple[str, ...] | None:
        """Take the rows of the `channels` query; the secrets new channels brought, or None when nothing
        changed."""
        rows = tuple(rows)
        if rows == self._rows:
            return None
        self._rows = rows
        channels = [Channel(name, kind, settings or {}, refs or {}) for name, kind, settings, refs in rows]
        providers = dict(self._defaults)
        for channel in channels:
            providers[channel.name] = channel_provider(channel, self._env)
        self.kinds = {**{name: name for name in self._defaults}, **{c.name: c.kind for c in channels}}
        self.providers = providers
        for channel in channels:
            provider = providers[channel.name]
            if isinstance(provider, Unconfigured):
                logs.warning("channel not configured; its deliveries will be skipped", channel=channel.name,
                             reason=provider.reason)
        logs.info("channels loaded", channels=",".join(c.name for c in channels) or "none")
        return all_secrets(providers)

    def knows(self, channel: str) -> bool:
        return channel in self.providers
