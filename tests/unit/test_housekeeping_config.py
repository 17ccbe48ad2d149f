"""The site's `housekeeping:` section: defaults, the directories it resolves, strict validation naming file,
key and reason."""

from __future__ import annotations

from pathlib import Path

import pytest

from lanectl.config import ConfigError, load_config


def with_section(cfg: Path, section: str) -> Path:
    p = cfg / "site.yaml"
    p.write_text(p.read_text() + "\nhousekeeping:\n" + section)
    return p


def test_the_defaults_back_up_daily_keep_seven_and_retain_400_days(example_config: Path):
    c = load_config(example_config)
    hk = c.site.housekeeping
    assert (hk.enabled, hk.generations, hk.backup_at, hk.retention_days, hk.vacuum_weekday, hk.report_at) == \
        (True, 7, "03:30", 400, "sun", "00:10")
    backups, reports = hk.directories(c.directory, c.site.database)
    assert backups == c.site.database.parent / "backups" and reports == c.site.database.parent / "reports"


def test_relative_directories_are_under_the_configuration_directory(example_config: Path):
    with_section(example_config, "  backup_dir: /mnt/usb/lanectl\n  report_dir: reports\n  generations: 3\n")
    c = load_config(example_config)
    assert c.site.housekeeping.directories(c.directory, c.site.database) == \
        (Path("/mnt/usb/lanectl"), example_config / "reports")


@pytest.mark.parametrize("section, key, reason", [
    ("  backup_at: '3:30pm'\n", "housekeeping.backup_at", "HH:MM"),
    ("  report_at: '24:00'\n", "housekeeping.report_at", "HH:MM"),
    ("  generations: 0\n", "housekeeping.generations", "greater than or equal to 1"),
    ("  retention_days: 7\n", "housekeeping.retention_days", "greater than or equal to 31"),
    ("  vacuum_weekday: sunday\n", "housekeeping.vacuum_weekday", "'sun'"),
    ("  retention_dayz: 400\n", "housekeeping.retention_dayz", "unknown key"),
])
def test_a_bad_housekeeping_value_names_file_key_and_reason(example_config: Path, section: str, key: str,
                                                             reason: str):
    p = with_section(example_config, section)
    with pytest.raises(ConfigError) as err:
        load_config(example_config)
    [msg] = err.value.problems
    assert str(p) in msg and key in msg and reason in msg, msg


def test_the_example_housekeeping_section_loads_once_uncommented(example_config: Path):
    p = example_config / "site.yaml"
    lines = p.read_text().splitlines()
    start = lines.index("# housekeeping:")
    end = next((i for i in range(start + 1, len(lines)) if not lines[i].startswith("#   ")), len(lines))
    lines[start:end] = [line[2:] for line in lines[start:end]]
    p.write_text("\n".join(lines) + "\n")
    hk = load_config(example_config).site.housekeeping
    assert (hk.backup_dir, hk.generations, hk.retention_days, hk.report_at) == \
        (Path("/var/lib/lanectl/backups"), 7, 400, "00:10")
