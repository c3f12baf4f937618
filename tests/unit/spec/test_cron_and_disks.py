"""Cron services and disks as the spec reads them: defaults filled in, values normalised."""

from __future__ import annotations

from .spec_dir import SpecDir


def test_a_cron_service_with_a_disk_reads_with_its_defaults(spec_dir: SpecDir) -> None:
    spec_dir.write("""\
        project: acme
        services:
          - name: nightly
            type: cron
            schedule: "0  3 * * *"
            start: python report.py
            disk: {mount_path: /var/data/}
          - name: sweep
            type: cron
            schedule: "@hourly"
            timezone: Europe/Paris
            concurrency: replace
            timeout: 5m
            catch_up: true
            retries: 2
            history: 3
            start: python sweep.py
        """)
    nightly, sweep = spec_dir.load().services
    assert nightly.type == "cron" and nightly.cron is not None
    assert nightly.cron.to_dict() == {"schedule": "0 3 * * *", "timezone": "UTC", "concurrency": "forbid",
                                      "timeout": None, "catch_up": False, "retries": 0, "history": 10}
    # The disk is named after its service unless named; the path is normalised.
    assert nightly.disk is not None and nightly.disk.to_dict() == {"name": "nightly", "mount_path": "/var/data",
                                                                   "size": "1Gi"}
    assert sweep.cron is not None and sweep.cron.to_dict() == {
        "schedule": "@hourly", "timezone": "Europe/Paris", "concurrency": "replace", "timeout": 300.0,
        "catch_up": True, "retries": 2, "history": 3}
    assert sweep.disk is None
