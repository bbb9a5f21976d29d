"""Which media a Runner may read, for services that take messages from strangers.

An OpenAI-style message names its media by URL, so a stranger's message can name
``/etc/passwd``, ``file:///home/...`` or ``http://169.254.169.254/`` (a cloud's metadata
service). A `MediaPolicy` says what may be read: local files (all, none, or only under given
directories, checked on the resolved path so ``..`` and symlinks cannot leave them), remote
URLs (all, none, or only given hosts; an address that is loopback, private or link-local is
refused unless named, checked on the address a name resolves to and on every redirect), and
how many bytes a part and a whole request may bring. data: URLs carry their bytes, so only
the size caps apply to them. Refusals are `MediaRefused` errors naming the rule, raised before
anything is read. Without a policy (the CLI: the user's own files) everything is allowed.

    Runner(model, policy=MediaPolicy(local_files=["/srv/uploads"], remote_urls=["images.example.com"],
                                    max_bytes=20_000_000, max_request_bytes=50_000_000))
"""

from __future__ import annotations

import dataclasses
import functools
import ipaddress
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .. import config
from ..errors import MediaRefused
from .part import DEVICES, REMOTE, Location, short, split_url

__all__ = ["MediaPolicy"]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclasses.dataclass(frozen=True)
class MediaPolicy:
    """What media a Runner may read; the defaults suit a service (no local files, public URLs).

    local_files: True (any), False (none, nor standard input), or the directories files must
        lie in, after resolving ``..`` and symlinks.
    remote_urls: True (any host), False (none), or the hosts allowed ("example.com", or
        "*.example.com" for its subdomains), and the addresses allowed though not public
        ("127.0.0.1", "10.0.0.0/8").
    private_addresses: connect to loopback, private and link-local addresses that are not named.
    max_bytes: most bytes one media part may bring; max_request_bytes: what all the parts of one
        request may read together (media the Runner has decoded before are not read again).
    """

    local_files: bool | Sequence[str | Path] = False
    remote_urls: bool | Sequence[str] = True
    private_addresses: bool = False
    max_bytes: int = config.DEFAULT_MAX_DOWNLOAD_BYTES
    max_request_bytes: int | None = None
    devices: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.local_files, bool):
            dirs = (self.local_files,) if isinstance(self.local_files, (str, Path)) else self.local_files
            object.__setattr__(self, "local_files", tuple(Path(d).expanduser().resolve() for d in dirs))
        if not isinstance(self.remote_urls, bool):
            hosts = (self.remote_urls,) if isinstance(self.remote_urls, str) else self.remote_urls
            object.__setattr__(self, "remote_urls", tuple(h.strip().lower().rstrip(".") for h in hosts))
        for name in ("max_bytes", "max_request_bytes"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise MediaRefused(f"MediaPolicy {name}={value!r} is not valid: give a whole number of bytes >= 1")

    # -- before anything is read ----------------------------------------------------

    def admit(self, where: Location) -> Location:
        """What to read (a local file by the real path checked), or MediaRefused naming the rule it breaks."""
        if where.scheme == "stdin":
            if self.local_files is not True:
                raise MediaRefused(
                    f"standard input ('-') is refused by the media policy "
                    f"(local_files={self._shown_local()}): send the media inline as a data: URL"
                )
            return where
        if where.scheme in DEVICES:
            if not self.devices:
                raise MediaRefused(device_refusal(where, "MediaPolicy(devices=True)"))
            return where
        if where.path is not None:
            return self._admit_file(where)
        if where.scheme in REMOTE:
            self._admit_host(where.text, where.host)
        return where  # data: carries its bytes; only the size caps apply

    def _admit_file(self, where: Location) -> Location:
        label, path = where.label, where.path
        assert path is not None
        if self.local_files is True:
            return where
        if self.local_files is False:
            raise MediaRefused(
                f"local file {label} is refused by the media policy (local_files=False): "
                "send the media inline as a data: URL"
            )
        try:
            resolved = path.resolve()  # '..' and every symlink on the way
        except (OSError, RuntimeError):  # a symlink loop
            raise MediaRefused(
                f"local file {label} cannot be resolved to a real path: the media policy refuses it"
            ) from None
        if not any(resolved.is_relative_to(d) for d in self.local_files):
            raise MediaRefused(
                f"local file {label} is outside the directories the media policy allows "
                f"(local_files={self._shown_local()}): use a file inside them"
            )
        return where.resolved(resolved)  # read what was checked, not the name again

    def _admit_host(self, url: str, host: str) -> None:
        host = host.lower().rstrip(".")
        if self.remote_urls is False:
            raise MediaRefused(
                f"{url}: remote URLs are refused by the media policy (remote_urls=False): "
                "send the media inline as a data: URL"
            )
        if self.remote_urls is not True and not any(_host_matches(host, entry) for entry in self.remote_urls):
            raise MediaRefused(
                f"{url}: host {host or '(none)'} is not one the media policy allows "
                f"(remote_urls={list(self.remote_urls)}): use a URL on an allowed host"
            )
        try:
            literal = ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            return  # a name: its addresses are checked when it is resolved
        self.check_address(host, str(literal))

    # -- while downloading (mmchat.inputs.netlimits.Guard) -------------------------------------

    def check_address(self, host: str, address: str) -> None:
        """Refuse a connection to a loopback, private or link-local address nobody named."""
        ip = ipaddress.ip_address(address.split("%", 1)[0])
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        if ip.is_global and not ip.is_multicast or self.private_addresses or any(ip in n for n in self._networks):
            return
        what = "loopback" if ip.is_loopback else "link-local" if ip.is_link_local else "private or reserved"
        named = "" if host == address else f"{host} resolves to "
        raise MediaRefused(
            f"{named}{ip}, a {what} address, which the media policy refuses unless named in "
            f"remote_urls (e.g. remote_urls=[..., {str(ip)!r}])"
        )

    def check_redirect(self, url: str, newurl: str) -> None:
        """A redirect is a new URL: the same rules, before it is followed."""
        try:
            self._admit_host(newurl, split_url(newurl).hostname or "")
        except MediaRefused as e:
            raise MediaRefused(f"{url} redirects to {e}") from None

    def check_size(self, label: str, size: int, remaining: int | None) -> None:
        """A part whose size is known before it is read (a local file, a data: URL)."""
        if size > self.max_bytes:
            raise MediaRefused(
                f"{label} is {size} bytes, more than the media policy allows per part "
                f"(max_bytes={self.max_bytes}): send a smaller file"
            )
        if remaining is not None and size > remaining:
            raise MediaRefused(
                f"{label} is {size} bytes, more than is left of the media policy's bytes per "
                f"request (max_request_bytes={self.max_request_bytes}): send fewer or smaller media"
            )

    @functools.cached_property
    def _networks(self) -> list[Network]:
        if isinstance(self.remote_urls, bool):
            return []
        out = []
        for entry in self.remote_urls:
            try:
                out.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
            except ValueError:
                continue
        return out

    def _shown_local(self) -> str:
        return repr(self.local_files) if isinstance(self.local_files, bool) else str([str(d) for d in self.local_files])


def device_refusal(where: Location, allow: str) -> str:
    """Why a clipboard:, screen: or mic: part was refused, and the setting that allows it."""
    what = {"clipboard": "clipboard", "screen": "screen", "mic": "microphone"}[where.scheme]
    return (
        f"{where.text}: reading this machine's {what} is refused unless allowed "
        f"({allow}): a service must never read its host's clipboard, screen or microphone"
    )


def _host_matches(host: str, entry: str) -> bool:
    if entry.startswith("*."):
        return host.endswith(entry[1:])
    if host == entry.strip("[]"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")) in ipaddress.ip_network(entry.strip("[]"), strict=False)
    except ValueError:
        return False


class Budget:
    """What a policy lets one request read: bytes per part, and what is left of those per request."""

    def __init__(self, policy: MediaPolicy | None):
        self.policy = policy
        self.left = policy.max_request_bytes if policy is not None else None

    def local(self, where: Location) -> Any:
        """A local file's head and path (its size checked first)."""
        from .sources import local_source

        self._spend(self._local_size(where))
        return local_source(where)

    def _local_size(self, where: Location) -> int:
        """A local file's size, refused before it is opened when the policy's caps cannot take it."""
        if self.policy is None or where.path is None:
            return 0
        try:
            size = where.path.stat().st_size
        except OSError:
            return 0  # the read says what is wrong with it
        self.policy.check_size(where.label, size, self.left)
        return size

    def read(self, where: Location, **kwargs: Any) -> Any:
        from .sources import TooLarge, read_source

        if self.policy is None:
            return read_source(where, **kwargs)
        self._local_size(where)
        cap = self.policy.max_bytes if self.left is None else min(self.policy.max_bytes, self.left)
        try:
            source = read_source(where, max_bytes=cap, guard=self.policy, **kwargs)
        except TooLarge:
            if cap == self.policy.max_bytes:
                rule = f"per part (max_bytes={cap})"
            else:
                rule = f"for the rest of this request (max_request_bytes={self.policy.max_request_bytes})"
            raise MediaRefused(
                f"{short(where.text)} is larger than the {cap} bytes the media policy allows {rule}: "
                "send a smaller file"
            ) from None
        self._spend(len(source.data))
        return source

    def _spend(self, n: int) -> None:
        if self.left is not None:
            self.left -= n
