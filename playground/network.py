"""Offline by default when there is no network, and what needs one.

Whether a network exists is read from the kernel's routing tables (/proc/net/route, /proc/net/ipv6_route):
no default route, no network. Nothing is sent to find out, so the check itself stays offline. Where the
tables do not exist (macOS, Windows) the answer is "maybe": we assume a network and the hub's own errors
explain a failed download.
"""

from __future__ import annotations

from pathlib import Path

PROC_NET = Path("/proc/net")
DEFAULT_IPV4 = "00000000"
DEFAULT_IPV6 = "0" * 32
RTF_UP = 0x1

# What needs a network model or file; the header lists these when the app runs offline.
NEEDS_NETWORK = (
    "hub models in the model picker (marked “hub, needs internet”) and any other hub id",
    "hub tokenizer ids in Tokenization (the model's, MiniLM's, Gemma's and raw bytes work offline)",
    "a hub draft model in Speculative decoding (the int4, int8, layer-skip and n-gram drafts work offline)",
)


def has_default_route(ipv4_table: str, ipv6_table: str = "") -> bool:
    """True when a routing table has an up default route on an interface other than loopback.

    >>> has_default_route("Iface\\tDestination\\tGateway\\tFlags\\neth0\\t00000000\\t010200C0\\t0003\\n")
    True
    """
    for line in ipv4_table.splitlines()[1:]:
        parts = line.split()
        if len(parts) >= 4 and parts[0] != "lo" and parts[1] == DEFAULT_IPV4 and int(parts[3], 16) & RTF_UP:
            return True
    for line in ipv6_table.splitlines():
        parts = line.split()
        # dest, dest prefix, source, source prefix, next hop, metric, refcount, use, flags, interface
        if len(parts) >= 10 and parts[0] == DEFAULT_IPV6 and parts[1] == "00" and parts[9] != "lo" \
                and int(parts[8], 16) & RTF_UP:
            return True
    return False


def network_available(proc_net: Path = PROC_NET) -> bool:
    """False only when the routing tables exist and have no default route."""
    ipv4 = proc_net / "route"
    if not ipv4.exists():
        return True
    ipv6 = proc_net / "ipv6_route"
    return has_default_route(ipv4.read_text(), ipv6.read_text() if ipv6.exists() else "")


def offline_note() -> str:
    """The header's line when the app runs offline: what works, and what would need a network."""
    return ("**Offline**: everything runs on the embedded models (SmolLM2-135M-Instruct, all-MiniLM-L6-v2) "
            "and nothing reaches the network. Needs a network: " + "; ".join(NEEDS_NETWORK) + ".")
