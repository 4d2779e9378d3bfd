"""No default route in the kernel's routing tables -> the app runs offline unless told otherwise."""

from __future__ import annotations


def test_no_default_route_means_offline(tmp_path):
    from playground.network import has_default_route, network_available

    header = "Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\n"
    (tmp_path / "route").write_text(header + "lo\t00000000\t00000000\t0001\t0\t0\t0\t00000000\n"
                                    "eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\n")
    assert not network_available(tmp_path)
    (tmp_path / "ipv6_route").write_text("0" * 32 + " 00 " + "0" * 32 + " 00 fe800000000000000000000000000001 "
                                         "00000400 00000001 00000000 00000003 eth0\n")
    assert network_available(tmp_path)  # an IPv6 default route is a network
    assert has_default_route(header + "eth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\n")
    assert not has_default_route(header + "eth0\t00000000\t010200C0\t0002\t0\t0\t0\t00000000\n")  # not up
    assert network_available(tmp_path / "missing")  # no routing tables (not Linux): assume a network


def test_app_goes_offline_by_default_without_a_route(monkeypatch):
    import app
    from playground.config import build_parser, settings_from_args

    monkeypatch.setattr("playground.network.network_available", lambda: False)
    args = build_parser().parse_args([])
    assert app.with_network_default(settings_from_args(args, {}), args, {}).offline
    args = build_parser().parse_args(["--no-offline"])
    assert not app.with_network_default(settings_from_args(args, {}), args, {}).offline
    args = build_parser().parse_args([])
    assert not app.with_network_default(settings_from_args(args, {}), args, {"PLAYGROUND_OFFLINE": "0"}).offline
