"""The netdev template's parameters, the spec's [[expect.links]] keys and the netlink report, without a VM."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from harness.errors import HarnessError
from harness.lifecycle.spec import load_spec, spec_from_dict
from harness.netcheck import LinkExpectation, NetReport, link_from_table
from harness.paths import REPO_ROOT
from harness.templates import render


def test_netdev_renders_its_parameters_as_c_values() -> None:
    source = render("netdev", "kmh_nd", {"count": 3, "prefix": "veth_x", "mac": "0A:00:00:00:10:fc"})
    code = source.files["kmh_nd.c"]
    assert "#define KMH_COUNT 3" in code
    assert '#define KMH_PREFIX "veth_x"' in code
    assert "{ 10, 0, 0, 0, 16, 252 }" in code
    assert "unregister_netdev(dev);" in code


def test_bad_netdev_leak_forgets_unregister_netdev() -> None:
    code = render("bad_netdev_leak", "kmh_leak").files["kmh_leak.c"]
    exit_body = code.split("static void __exit kmh_exit(void)", 1)[1].split("module_init", 1)[0]
    assert "kmh_destroy" not in exit_body and "unregister_netdev" in exit_body  # only in the comment
    assert "Deliberate defect" in exit_body


@pytest.mark.parametrize(
    ("params", "reason"),
    [
        ({"mac": "01:00:00:00:00:00"}, "multicast"),
        ({"mac": "00:00:00:00:00:00"}, "all-zero"),
        ({"mac": "02:00:00:00:00"}, "six two-digit hex bytes"),
        ({"mac": '02:00:00:00:00:0"'}, "six two-digit hex bytes"),
        ({"count": 16, "mac": "02:00:00:00:00:f5"}, "last MAC byte 0x104"),
        ({"mtu": 9001}, r"mtu 9001 must lie within min_mtu..max_mtu \(68..9000\)"),
        ({"min_mtu": 67}, "between 68 and 65535"),
        ({"max_mtu": 65536}, "between 68 and 65535"),
        ({"prefix": "a" * 14}, "limit is 13"),
        ({"prefix": "eth/0"}, "letters, digits"),
        ({"count": 0}, "between 1 and 16"),
    ],
)
def test_netdev_refuses_bad_parameters_in_one_line(params: dict, reason: str) -> None:
    with pytest.raises(HarnessError, match=reason) as caught:
        render("netdev", "kmh_nd", params)
    assert "\n" not in caught.value.message


def spec(links: object) -> dict:
    return {"module": {"template": "netdev", "name": "kmh_nd"}, "expect": {"links": links}}


def test_links_tables_become_expectations() -> None:
    parsed = spec_from_dict(
        spec([{"name": "kmhnet0", "mac": "02:6B:6D:68:00:00", "mtu": 1500, "up": True, "tx_count": 4}]),
        origin="t",
        base=Path.cwd(),
    )
    assert parsed.expect.links == (
        LinkExpectation("kmhnet0", mac="02:6b:6d:68:00:00", mtu=1500, up=True, tx_count=4),
    )
    assert parsed.needs_python
    assert not spec_from_dict({"module": {"template": "hello"}}, origin="t", base=Path.cwd()).needs_python


def test_shipped_netdev_spec_asks_for_every_kind_of_check() -> None:
    parsed = load_spec(REPO_ROOT / "modules" / "netdev.toml")
    first = parsed.expect.links[0]
    assert None not in (first.mac, first.mtu, first.set_mtu, first.refuse_mtu, first.tx_count) and first.up


@pytest.mark.parametrize(
    ("links", "reason"),
    [
        ([{"name": "kmhnet0", "mtu_max": 9000}], r"unknown key\(s\) mtu_max"),
        ([{"mtu": 1500}], "name must be an interface name"),
        ([{"name": "a/b"}], "name must be an interface name"),
        ([{"name": "x" * 16}], "name must be an interface name"),
        ([{"name": "kmhnet0", "mac": "02:00"}], "is not of the form"),
        ([{"name": "kmhnet0", "tx_count": 0}], "tx_count must be a positive integer"),
        ([{"name": "kmhnet0", "mtu": True}], "mtu must be a positive integer"),
        ([{"name": "kmhnet0", "up": "yes"}], "up must be true or false"),
        (["kmhnet0"], "must be a table"),
        ({"name": "kmhnet0"}, "expected a list"),
    ],
)
def test_link_mistakes_are_one_line_errors(links: object, reason: str) -> None:
    with pytest.raises(HarnessError, match=reason) as caught:
        spec_from_dict(spec(links), origin="t.toml", base=Path.cwd())
    assert "\n" not in caught.value.message


def test_a_link_typo_in_a_spec_file_is_a_usage_error(tmp_path: Path) -> None:
    path = tmp_path / "net.toml"
    path.write_text('[module]\ntemplate = "netdev"\n[[expect.links]]\nname = "kmhnet0"\ntxcount = 3\n')
    result = subprocess.run(
        [sys.executable, "-m", "harness.cli", "run", str(path)], cwd=REPO_ROOT, capture_output=True, text=True
    )
    assert result.returncode == 2
    assert "unknown key(s) txcount" in result.stderr
    assert "Traceback" not in result.stderr


def test_report_from_guest_json() -> None:
    data = {
        "phase": "loaded",
        "links": [
            {"name": "kmhnet0", "checks": [{"what": "exists", "ok": True, "detail": "index 2"}]},
            {
                "name": "kmhnet1",
                "checks": [{"what": "mac", "ok": False, "detail": "MAC 02:..:02, expected x"}],
            },
        ],
        "error": None,
    }
    report = NetReport.from_json("loaded", data)
    assert not report.ok
    assert report.problems == ["netlink: kmhnet1 mac: MAC 02:..:02, expected x"]
    assert report.summary() == "netlink (loaded): 1/2 checks passed on 2 link(s)"
    assert "FAIL kmhnet1 mac" in report.describe()


def test_report_of_a_check_that_did_not_run() -> None:
    report = NetReport.from_json("unloaded", {"links": [], "error": "Traceback ...\nValueError: boom\n"})
    assert not report.ok
    assert report.problems == ["netlink check (unloaded) did not run: ValueError: boom"]


def test_link_from_table_is_the_public_parser() -> None:
    assert link_from_table({"name": "n0", "refuse_mtu": 67}, "x") == LinkExpectation("n0", refuse_mtu=67)
