"""DNS-SD over mDNS with zeroconf's asyncio API, on the transport's own loop.

Advertises ``_<service_type>._tcp.local.`` with a TXT record carrying the protocol version, the
peer id, the display name and the user's discovery info, and browses the same type. Found and
lost services are reported as :class:`Found` values; nothing here opens a connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import ifaddr
from zeroconf import IPVersion, ServiceStateChange, Zeroconf
from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

from ._framing import PROTOCOL_VERSION

__all__ = ["KEY_ID", "KEY_NAME", "KEY_VERSION", "Discovery", "Found", "resolve_interfaces"]

log = logging.getLogger("mpstore.lan")

KEY_VERSION = "mpstore-v"
KEY_ID = "mpstore-id"
KEY_NAME = "mpstore-name"
_RESERVED = {KEY_VERSION, KEY_ID, KEY_NAME}
_RESOLVE_TIMEOUT_MS = 3000
_IP_VERSIONS = {"v4": IPVersion.V4Only, "v6": IPVersion.V6Only, "all": IPVersion.All}


@dataclass(frozen=True)
class Found:
    """A service of our type seen on the network."""

    name: str
    peer_id: str
    display_name: str
    version: int
    addresses: tuple[tuple[str, int], ...]
    discovery_info: Mapping[str, str] = field(default_factory=dict)


def service_type_name(service_type: str) -> str:
    """The DNS-SD type for an mpstore service type, e.g. ``_chat._tcp.local.``."""
    return f"_{service_type}._tcp.local."


def _truncate_utf8(text: str, limit: int) -> str:
    data = text.encode()[:limit]
    return data.decode(errors="ignore")


def resolve_interfaces(interfaces: Sequence[str] | None, ip_version: str) -> list[str]:
    """IP addresses for ``interfaces`` (addresses or interface names); all non-loopback if None."""
    want_v4 = ip_version in ("v4", "all")
    want_v6 = ip_version in ("v6", "all")
    adapters = ifaddr.get_adapters()
    out: list[str] = []
    wanted = list(interfaces) if interfaces is not None else None
    for adapter in adapters:
        for ip in adapter.ips:
            if isinstance(ip.ip, tuple):
                if not want_v6:
                    continue
                text = ip.ip[0]
            else:
                if not want_v4:
                    continue
                text = ip.ip
            addr = ipaddress.ip_address(text)
            if wanted is None:
                if addr.is_loopback:
                    continue
            elif text not in wanted and adapter.nice_name not in wanted and adapter.name not in wanted:
                continue
            if text not in out:
                out.append(text)
    if wanted is not None:
        for item in wanted:
            with contextlib.suppress(ValueError):
                ipaddress.ip_address(item)
                if item not in out:
                    out.append(item)
    return out


class Discovery:
    """Advertise and browse one service type; report what is found to two callbacks."""

    def __init__(
        self,
        *,
        service_type: str,
        peer_id: str | None,
        display_name: str,
        discovery_info: Mapping[str, str],
        port: int,
        interfaces: Sequence[str] | None,
        ip_version: str,
        on_found: Callable[[Found], None],
        on_lost: Callable[[str], None],
        advertise: bool = True,
    ) -> None:
        self._type = service_type_name(service_type)
        self._peer_id = peer_id
        self._display_name = display_name
        self._info = dict(discovery_info)
        self._port = port
        self._interfaces = list(interfaces) if interfaces is not None else None
        self._ip_version = ip_version
        self._on_found = on_found
        self._on_lost = on_lost
        self._advertise = advertise and peer_id is not None
        self._azc: AsyncZeroconf | None = None
        self._browser: AsyncServiceBrowser | None = None
        self._service: AsyncServiceInfo | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._names: dict[str, str] = {}

    def _txt(self) -> dict[str, str]:
        txt: dict[str, str] = {}
        for key, value in self._info.items():
            if key.lower() in _RESERVED:
                log.warning("discovery info key %r is reserved by mpstore; not advertised", key)
                continue
            txt[key] = value
        assert self._peer_id is not None
        txt[KEY_VERSION] = str(PROTOCOL_VERSION)
        txt[KEY_ID] = self._peer_id
        txt[KEY_NAME] = _truncate_utf8(self._display_name, 200)
        return txt

    async def start(self) -> None:
        """Join mDNS, start browsing, then register our service (probing takes about 1.5 s)."""
        zc_interfaces: Any
        version = _IP_VERSIONS[self._ip_version]
        if self._interfaces is None:
            from zeroconf import InterfaceChoice

            zc_interfaces = InterfaceChoice.All
        else:
            zc_interfaces = resolve_interfaces(self._interfaces, self._ip_version)
        self._azc = AsyncZeroconf(interfaces=zc_interfaces, ip_version=version)
        self._browser = AsyncServiceBrowser(self._azc.zeroconf, [self._type], handlers=[self._on_change])
        if not self._advertise:
            return
        assert self._peer_id is not None
        suffix = f" ({self._peer_id[:8]})"
        instance = _truncate_utf8(self._display_name, 63 - len(suffix.encode())) + suffix
        addresses = resolve_interfaces(self._interfaces, self._ip_version) or ["127.0.0.1"]
        self._service = AsyncServiceInfo(
            self._type,
            f"{instance}.{self._type}",
            port=self._port,
            properties=self._txt(),
            server=f"mpstore-{self._peer_id[:16]}.local.",
            addresses=addresses,
        )
        waiter = await self._azc.async_register_service(self._service, allow_name_change=True)
        await waiter

    async def stop(self) -> None:
        """Unregister (sending goodbyes), stop browsing, and leave mDNS."""
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        azc, self._azc = self._azc, None
        if self._browser is not None:
            await self._browser.async_cancel()
            self._browser = None
        if azc is not None:
            try:
                if self._service is not None:
                    waiter = await azc.async_unregister_service(self._service)
                    await asyncio.wait_for(waiter, 3.0)
            except Exception as exc:  # goodbyes are a courtesy; closing must go on
                log.debug("unregistering the service failed: %r", exc)
            finally:
                self._service = None
                await azc.async_close()

    def _on_change(
        self, zeroconf: Zeroconf, service_type: str, name: str, state_change: ServiceStateChange
    ) -> None:
        if state_change is ServiceStateChange.Removed:
            peer_id = self._names.pop(name, None)
            if peer_id is not None:
                self._on_lost(peer_id)
            return
        task = asyncio.get_running_loop().create_task(self._resolve(zeroconf, service_type, name))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _resolve(self, zeroconf: Zeroconf, service_type: str, name: str) -> None:
        info = AsyncServiceInfo(service_type, name)
        try:
            if not await info.async_request(zeroconf, _RESOLVE_TIMEOUT_MS):
                log.debug("could not resolve %s", name)
                return
        except Exception as exc:
            log.debug("resolving %s failed: %r", name, exc)
            return
        found = self._parse(name, info)
        if found is None or found.peer_id == self._peer_id:
            return
        self._names[name] = found.peer_id
        self._on_found(found)

    def _parse(self, name: str, info: AsyncServiceInfo) -> Found | None:
        props = {k: v for k, v in info.decoded_properties.items() if v is not None}
        peer_id = props.pop(KEY_ID, "")
        display_name = props.pop(KEY_NAME, "")
        try:
            version = int(props.pop(KEY_VERSION, ""))
        except ValueError:
            log.debug("ignoring %s: no mpstore protocol version in its TXT record", name)
            return None
        if not peer_id or info.port is None:
            return None
        hosts = info.parsed_scoped_addresses(_IP_VERSIONS[self._ip_version])
        return Found(
            name=name,
            peer_id=peer_id,
            display_name=display_name,
            version=version,
            addresses=tuple((h, info.port) for h in hosts),
            discovery_info=props,
        )
