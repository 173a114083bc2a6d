"""``kmh doctor``: what this host has and lacks for each feature, and the line that installs it."""

from __future__ import annotations

from plumbum import cli

from harness.commands.common import format_table
from harness.doctor import OPTIONAL, diagnose, install_lines
from harness.resources import guest_dir

EXIT_OK = 0
EXIT_MISSING = 1


class DoctorCommand(cli.Application):
    """Check the host for what kmh needs (kbuild tools, QEMU, the guest's userland, KVM, disk, and
    the optional Vagrant and cluster pieces); exit 1 when something required is missing."""

    require = cli.SwitchAttr(
        "--require",
        cli.Set(*OPTIONAL[1:]),
        list=True,
        help="also require an optional feature (vagrant: --backend vagrant; cluster: Dask scale-out)",
    )

    def main(self) -> int:
        findings = diagnose(tuple(self.require))
        rows = [("FEATURE", "CHECK", "STATUS", "DETAIL")]
        for finding in findings:
            status = "ok" if finding.ok else ("warn" if finding.advisory else "MISSING")
            rows.append((finding.feature, finding.name, status, finding.problem or finding.detail))
        print(format_table(rows))
        missing = [f for f in findings if not f.ok and not f.advisory]
        optional = [f for f in findings if not f.ok and f.advisory]
        for title, failed in (
            ("To install what is missing:", missing),
            ("Optional, if you want them:", optional),
        ):
            if install_lines(failed):
                print(f"\n{title}")
                for line in install_lines(failed):
                    print(f"  {line}")
                if any(f.feature == "vagrant" for f in failed):
                    # The same packages, plus libvirt's daemons started where there is no systemd.
                    print(f"  (Vagrant backend: or run  bash {guest_dir() / 'box' / 'setup.sh'})")
        print()
        if missing:
            print(f"{len(missing)} required check(s) failed: {', '.join(f.name for f in missing)}")
            return EXIT_MISSING
        print("Everything kmh run needs is here.")
        return EXIT_OK
