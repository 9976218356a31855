"""zeroconf alone: register a service and browse; print seconds from start to seeing another one."""

from __future__ import annotations

import asyncio
import sys
import time

from zeroconf import IPVersion, ServiceStateChange, Zeroconf
from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

TYPE = "_zcprobe._tcp.local."


async def main(name: str) -> None:
    t0 = time.monotonic()
    azc = AsyncZeroconf(ip_version=IPVersion.V4Only)
    found = asyncio.Event()
    own = f"{name}.{TYPE}"

    def on_change(zeroconf: Zeroconf, service_type: str, name: str, state_change: ServiceStateChange) -> None:
        if name != own and state_change is not ServiceStateChange.Removed:
            found.set()

    browser = AsyncServiceBrowser(azc.zeroconf, [TYPE], handlers=[on_change])
    info = AsyncServiceInfo(TYPE, own, port=9, properties={"a": "b"}, server=f"{name}.local.")
    await (await azc.async_register_service(info))
    await asyncio.wait_for(found.wait(), 20)
    print(f"{time.monotonic() - t0:.4f}", flush=True)
    await asyncio.sleep(1.0)  # stay visible for the other probe
    await browser.async_cancel()
    await azc.async_close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
